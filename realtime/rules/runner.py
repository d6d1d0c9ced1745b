"""Periodic rule evaluation (``wv realtime rules``): facts in, flags stored and published.

Each pass evaluates ``(since - overlap, now]`` so events that arrived late are still judged;
the overlap re-produces flags already raised, which the writer recognises by their
deterministic ids. New flags go to ``anomaly_flags`` through the one write path and then to
``wv.anomalies`` (keyed by facility) for live consumers; ingest dedupes them by id as well.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import psycopg
from kafka import KafkaProducer

from contract.proto import warehouse_vision_pb2 as pb
from realtime.metrics import RULE_PASSES
from realtime.resilience import TRANSIENT_ERRORS
from realtime.rules.config import RuleSet
from realtime.rules.engine import evaluate
from realtime.rules.loader import FactLoader
from realtime.sink import EventSink

log = logging.getLogger(__name__)

RULES_SOURCE = "rules"


class RuleRunner:
    """Evaluates a rule set against the database; one instance per process."""

    def __init__(
        self,
        rules: RuleSet,
        connections: Callable[[], AbstractContextManager[psycopg.Connection]],
        sink: EventSink,
        *,
        producer: KafkaProducer | None = None,
        anomalies_topic: str = "wv.anomalies",
        overlap: timedelta = timedelta(minutes=5),
    ) -> None:
        self._loader = FactLoader(rules)
        self._rules = rules
        self._connections = connections
        self._sink = sink
        self._producer = producer
        self._topic = anomalies_topic
        self._overlap = overlap

    def evaluate(
        self, since: datetime, now: datetime, *, give_up: Callable[[], bool] = lambda: False
    ) -> list[pb.AnomalyFlag]:
        """One pass over ``(since, now]``: returns every due flag (stored and published)."""
        with self._connections() as conn:
            facts = self._loader.load(conn, since, now)
        flags = evaluate(self._rules, facts, since, now)
        if flags:
            result = self._sink.store((), flags, source=RULES_SOURCE, give_up=give_up)
            log.info("rules raised %d flags (%d new)", len(flags), result.flags_written)
            if self._producer is not None:
                for flag in flags:
                    self._producer.send(
                        self._topic, key=flag.facility_id.encode(), value=flag.SerializeToString()
                    )
                self._producer.flush(10)
        return flags

    def run(
        self, stop: threading.Event, *, interval_s: float, lookback: timedelta = timedelta(hours=1)
    ) -> None:
        """Evaluate every ``interval_s`` until ``stop``; the first pass looks ``lookback`` back."""
        since = datetime.now(UTC) - lookback
        while not stop.is_set():
            now = datetime.now(UTC)
            try:
                self.evaluate(since - self._overlap, now, give_up=stop.is_set)
                since = now
                RULE_PASSES.labels("ok").inc()
            except TRANSIENT_ERRORS as exc:
                RULE_PASSES.labels("postponed").inc()
                log.warning("rule evaluation postponed, database unavailable: %s", exc)
            stop.wait(interval_s)
