"""Kafka transport: `DetectionBatch` values on `<prefix>detections` (key = facility id); a batch
counts as acknowledged when its record got its `acks=all` delivery report.

An event's anomaly flags travel inside the event, on this one record: the centre stores them in
the same transaction as the event. Nothing goes to `<prefix>anomalies` from the edge (that topic
carries the centre's rule flags for live consumers; an older edge that still sends its flags
there loses nothing, the centre reads them from the events).

The producer is not idempotent on purpose: brokers that lose producer state on restart (the local
Tansu broker keeps everything in memory) reject the old producer id forever. Retries are ours
(the outbox relay), and the centre deduplicates by event_id. After a failure the producer is
closed and rebuilt on the next attempt, so a restarted broker is rediscovered from scratch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from edge.publish.base import Delivery, Transport, TransportError
from edge.publish.wire import Outgoing, batch_bytes

log = logging.getLogger(__name__)


class KafkaTransport(Transport):
    name = "kafka"

    def __init__(self, bootstrap: str, facility_id: str, topic_prefix: str, timeout_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.key = facility_id.encode()
        self.detections_topic = f"{topic_prefix}detections"
        self.timeout_s = timeout_s
        self._producer: Any = None

    def _connect(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            ms = int(self.timeout_s * 1000)
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    enable_idempotence=False,
                    retries=0,
                    linger_ms=2,
                    max_request_size=4 * 2**20,
                    request_timeout_ms=ms,
                    delivery_timeout_ms=ms + 10,
                    max_block_ms=ms,
                    bootstrap_timeout_ms=ms,
                    reconnect_backoff_max_ms=1000,
                )
            except Exception as exc:
                raise TransportError(f"kafka at {self.bootstrap} unreachable: {exc}") from None
            self.connects += 1
        return self._producer

    def send(self, events: Sequence[Outgoing], timeout_s: float) -> Delivery:
        producer = self._connect()
        value = batch_bytes(str(uuid.uuid4()), events)
        try:
            future = producer.send(self.detections_topic, key=self.key, value=value)
            producer.flush(timeout=timeout_s)
            future.get(timeout=timeout_s)
        except Exception as exc:
            self._reset()
            raise TransportError(f"kafka did not acknowledge {len(events)} events: {exc}") from None
        return Delivery(acked=[e.event_id for e in events])

    def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # closing a broken producer may itself fail; it is discarded anyway
                log.debug("kafka producer close: %s", exc)

    def close(self) -> None:
        self._reset()
