"""SKU reference embeddings: what each product normally looks like, shared through Redis.

A reference is the running mean of the embeddings of confident, undamaged decisions for a SKU.
The most frequent SKUs (top `capacity` by local count) are cached in memory and written to Redis
under `wv:sku-ref:<model_version>:<sku>` so every camera and edge box shares them and a restart
starts warm. Embeddings are model-specific, hence the version in every key (local ones too): after
a model swap the references are learnt again for the new version. Redis is optional: every
call has a short timeout behind a circuit breaker, and when it is down the local cache keeps
working (lookups for SKUs not cached locally count as misses).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from foundation.resilience import CircuitBreaker

log = logging.getLogger(__name__)

KEY_PREFIX = "wv:sku-ref"


@dataclass
class Reference:
    vector: np.ndarray
    count: int

    def distance(self, embedding: np.ndarray) -> float:
        """Cosine distance in [0, 2] between the L2-normalised mean and an embedding."""
        ref = self.vector / max(float(np.linalg.norm(self.vector)), 1e-12)
        emb = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
        return 1.0 - float(np.dot(ref, emb))


@dataclass
class ReferenceStats:
    lookups: int = 0
    hits: int = 0
    redis_errors: int = 0
    redis_hits: int = 0
    foreign: int = 0
    """Shared references of another embedding size (another model under the same version name)."""
    sku_counts: Counter[str] = field(default_factory=Counter)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class SkuReferences:
    def __init__(
        self,
        redis_url: str | None = None,
        capacity: int = 200,
        min_count: int = 5,
        timeout_s: float = 0.05,
    ) -> None:
        self.capacity = capacity
        self.min_count = min_count
        self.stats = ReferenceStats()
        self._cache: OrderedDict[tuple[str, str], Reference] = OrderedDict()
        self._breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=10.0)
        self._redis = None
        if redis_url:
            from foundation.redis_connect import connect

            # a cache: rather miss than wait for a failover (the breaker skips Redis meanwhile)
            self._redis = connect(
                redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, failover_s=0
            )

    @staticmethod
    def key(model_version: str, sku: str) -> str:
        return f"{KEY_PREFIX}:{model_version}:{sku}"

    def lookup(self, model_version: str, sku: str, dims: int) -> Reference | None:
        """The SKU's reference if one with at least `min_count` samples exists (counts a hit/miss).

        ``dims`` is the size of the embedding it will be compared with: a shared reference of
        another size was learnt by another model that reused the version name (a test run, a
        rebuilt model); it is ignored here and overwritten by the next :meth:`learn`.
        """
        self.stats.lookups += 1
        k = (model_version, sku)
        ref = self._cache.get(k)
        if ref is None and self._frequent(k):
            ref = self._fetch(k, dims)
            if ref is not None:
                self.stats.redis_hits += 1
                self._remember(k, ref)
        if ref is not None and ref.count >= self.min_count:
            self._cache.move_to_end(k)
            self.stats.hits += 1
            return ref
        return None

    def learn(self, model_version: str, sku: str, embedding: np.ndarray) -> None:
        """Fold one trusted embedding into the SKU's running mean; frequent SKUs go to Redis."""
        k = (model_version, sku)
        self.stats.sku_counts[sku] += 1
        ref = self._cache.get(k)
        if ref is None:
            ref = Reference(np.asarray(embedding, dtype=np.float32).copy(), 1)
        else:
            ref.count += 1
            ref.vector += (embedding - ref.vector) / ref.count
        if self._frequent(k):
            self._remember(k, ref)
            self._store(k, ref)

    def _frequent(self, k: tuple[str, str]) -> bool:
        """Among the `capacity` most frequent SKUs seen here (every SKU qualifies until the cache fills)."""
        if len(self._cache) < self.capacity or k in self._cache:
            return True
        least = min(self.stats.sku_counts[s] for _, s in self._cache)
        return self.stats.sku_counts[k[1]] > least

    def _remember(self, k: tuple[str, str], ref: Reference) -> None:
        self._cache[k] = ref
        self._cache.move_to_end(k)
        while len(self._cache) > self.capacity:
            victim = min(self._cache, key=lambda c: self.stats.sku_counts[c[1]])
            del self._cache[victim]

    def _fetch(self, k: tuple[str, str], dims: int) -> Reference | None:
        if self._redis is None or not self._breaker.allow():
            return None
        try:
            raw = self._redis.hgetall(self.key(*k))
        except Exception as exc:  # any Redis failure degrades to local-only
            self._redis_failed(exc)
            return None
        self._breaker.record_success()
        if not raw:
            return None
        vector = np.frombuffer(bytes(raw[b"vector"]), dtype=np.float32)  # type: ignore[arg-type]
        if vector.shape != (dims,):
            self.stats.foreign += 1
            if self.stats.foreign == 1:
                log.warning(
                    "SKU reference %s holds %d values, the model's embeddings %d: another model "
                    "with the same version name wrote it; ignored and relearnt",
                    self.key(*k), vector.size, dims,
                )  # fmt: skip
            return None
        return Reference(vector.copy(), int(raw[b"count"]))

    def _store(self, k: tuple[str, str], ref: Reference) -> None:
        if self._redis is None or not self._breaker.allow():
            return
        try:
            self._redis.hset(self.key(*k), mapping={"vector": ref.vector.tobytes(), "count": ref.count})
        except Exception as exc:
            self._redis_failed(exc)
            return
        self._breaker.record_success()

    def _redis_failed(self, exc: Exception) -> None:
        self.stats.redis_errors += 1
        self._breaker.record_failure()
        log.warning("sku reference cache: redis unavailable, using local cache only (%s)", exc)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
