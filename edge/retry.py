"""Exponential backoff with full jitter, shared by capture and publishing.

Jitter spreads reconnect attempts of many cameras (and many edge boxes after a broker outage) so
they do not hammer the recovering service in lock-step. The circuit breaker that goes with it is
:class:`foundation.resilience.CircuitBreaker`, shared with the centre.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays base·2^n capped at `cap`, each drawn uniformly from [0, delay] ("full jitter")."""

    base_s: float = 0.1
    cap_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempts))
        self.attempts += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempts = 0
