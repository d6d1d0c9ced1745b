"""Periodic rule evaluation (``wv realtime rules``): facts in, flags stored once and announced once.

Each pass evaluates ``(since - overlap, now]`` so events that arrived late are still judged;
the overlap re-produces flags already raised, which the writer recognises by their
deterministic ids (its idempotency for replays of the same flag). A rule flag's one path: this
runner stores it in ``anomaly_flags`` through the one write path (the sink), which fans it out to
its facility's Redis stream, and publishes it on ``wv.anomalies`` (keyed by facility) for live
consumers outside; both announce only the flags that write stored, so each goes out once.
Nothing stores from ``wv.anomalies``: ingest does not read it.

The rate rules read the per-minute windows (:mod:`realtime.rules.loader`). While the windows are
not current (Redis lost data and the window aggregator has not rebuilt them yet, or Redis is
down) the other rules go on and the rate rules wait: the next pass with current windows judges
everything they missed since they last ran.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import psycopg
import redis
from kafka import KafkaProducer

from contract.proto import warehouse_vision_pb2 as pb
from realtime.metrics import RULE_PASSES, RULE_RATES_WAITING
from realtime.resilience import TRANSIENT_ERRORS
from realtime.rules.config import RateRule, RuleSet
from realtime.rules.engine import evaluate
from realtime.rules.loader import FactLoader
from realtime.sink import EventSink

log = logging.getLogger(__name__)

RULES_SOURCE = "rules"


class RuleRunner:
    """Evaluates a rule set against the database and the windows; one instance per shard.

    ``owns`` says which facilities are this runner's (with facility shards: those of its shard;
    the windows on Redis hold every facility's).
    """

    def __init__(
        self,
        rules: RuleSet,
        connections: Callable[[], AbstractContextManager[psycopg.Connection]],
        sink: EventSink,
        windows: redis.Redis,
        *,
        owns: Callable[[str], bool] = lambda _f: True,
        producer: KafkaProducer | None = None,
        anomalies_topic: str = "wv.anomalies",
        overlap: timedelta = timedelta(minutes=5),
        rates_catch_up: timedelta = timedelta(hours=6),
    ) -> None:
        self._loader = FactLoader(rules, windows, owns=owns)
        self._rates = RuleSet(rules=tuple(r for r in rules.rules if isinstance(r, RateRule)))
        self._others = RuleSet(rules=tuple(r for r in rules.rules if not isinstance(r, RateRule)))
        self._connections = connections
        self._sink = sink
        self._producer = producer
        self._topic = anomalies_topic
        self._overlap = overlap
        self._catch_up = rates_catch_up
        """How far back waiting rate rules catch up at most (windows older than their TTL are gone)."""
        self.rates_waiting_since: datetime | None = None
        """Start of the interval the rate rules still owe (None: they are up to date)."""

    def evaluate(
        self, since: datetime, now: datetime, *, give_up: Callable[[], bool] = lambda: False
    ) -> list[pb.AnomalyFlag]:
        """One pass over ``(since, now]`` (the rate rules over what they still owe, too): returns
        every due flag; those not stored before are stored, fanned out and published."""
        rates_since = max(min(since, self.rates_waiting_since or since), now - self._catch_up)
        with self._connections() as conn:
            facts = self._loader.load(conn, since, now)
            rate_facts = self._loader.rate_facts(conn, rates_since, now) if self._rates.rules else None
        flags = evaluate(self._others, facts, since, now)
        if rate_facts is not None:
            flags += evaluate(self._rates, rate_facts, rates_since, now)
        waiting = rates_since if self._rates.rules and rate_facts is None else None
        if (waiting is None) != (self.rates_waiting_since is None):
            log.warning(
                "rate rules wait for the windows (Redis down, or lost data not rebuilt yet by "
                "`wv realtime windows`)"
                if waiting
                else "windows current again: rate rules caught up"
            )
        self.rates_waiting_since = waiting
        RULE_RATES_WAITING.labels(self._sink.component).set(waiting is not None)
        if flags:
            result = self._sink.store((), flags, source=RULES_SOURCE, give_up=give_up)
            log.info("rules raised %d flags (%d new)", len(flags), result.flags_written)
            new = [flag for flag in flags if flag.anomaly_id in result.new_flag_ids]
            if self._producer is not None and new:
                for flag in new:
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
