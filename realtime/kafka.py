"""Kafka clients configured the way the central tier needs them (kafka-python).

Consumers never auto-commit (offsets are committed only after the database commit) and use a
short session timeout so group (re)joins take seconds, not the client default's ~25 s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

CONSUMER_DEFAULTS: dict[str, object] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 300_000,
    # Tansu holds a fetch for the whole wait even when data is there, and answers empty when its
    # read takes longer: WV_KAFKA_FETCH_MAX_WAIT_MS trades latency there against starvation.
    "fetch_max_wait_ms": 100,
    "max_partition_fetch_bytes": 8 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
}


def consumer(bootstrap: str, group_id: str, *, client_id: str, **overrides: object) -> KafkaConsumer:
    """A group consumer with manual commits; subscribe it yourself (with a rebalance listener)."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group_id,
        client_id=client_id,
        **{**CONSUMER_DEFAULTS, **overrides},
    )


def producer(bootstrap: str, *, client_id: str, max_request_bytes: int = 16 * 1024 * 1024) -> KafkaProducer:
    """A producer that waits for full acknowledgement (dead letters and rule flags are few)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        client_id=client_id,
        acks="all",
        linger_ms=5,
        max_request_size=max_request_bytes,
        retries=5,
    )


def ensure_topics(bootstrap: str, topics: Iterable[str], *, partitions: int = 6) -> list[str]:
    """Create the missing topics (brokers that auto-create would use their own partition count)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="wv-admin")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            log.info("created topics %s with %d partitions", missing, partitions)
        return missing
    finally:
        admin.close()
