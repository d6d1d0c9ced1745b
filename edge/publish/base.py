"""The transport interface: send a batch of events, return what the centre acknowledged.

A transport is synchronous and used by one thread (the outbox relay); it gets each event as the
pipeline serialised it (`edge.publish.wire`: nothing is parsed or re-encoded on the way); it raises TransportError
for anything that means "not acknowledged, try again later". Acknowledged and rejected events
are both removed from the outbox (rejected ones were dead-lettered by the centre with a reason).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge.publish.wire import Outgoing


class TransportError(RuntimeError):
    """The centre did not acknowledge the batch (unreachable, timeout, refused)."""


@dataclass
class Delivery:
    acked: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    """event_id → reason, for events the centre will never accept."""


class Transport(ABC):
    name: str
    connects: int = 0
    """Connections (re)established, for the reconnect metric."""

    @abstractmethod
    def send(self, events: Sequence[Outgoing], timeout_s: float) -> Delivery:
        """Deliver the events; returns only after the centre acknowledged (or raises)."""

    def close(self) -> None:  # noqa: B027 - stateless transports need not override
        """Release connections."""
