"""The transactional-outbox dispatcher: claims due ``erp_outbox`` rows, delivers them, records outcomes.

Rows are written by the analytics refresh in the same transaction as the figures they report
(:mod:`assets.facility_analytics.sql`). Here each pass claims a batch with ``FOR UPDATE SKIP LOCKED`` (two
dispatchers never send the same row at once), hands it to the adapter and, in the same
transaction, records what happened:

- delivered and confirmed → ``acknowledged`` (with the ERP's id); delivered as a file the ERP
  imports later → ``sent`` until :meth:`ErpAdapter.acknowledgements` confirms it;
- throttled, unavailable, network failure → retried within the pass with exponential backoff
  (tenacity) that honours ``Retry-After``; still failing → ``failed`` with ``next_attempt_at``
  pushed out, and ``parked`` after ``WV_ERP_PARK_AFTER`` tries in all;
- refused for its content (poison) → ``parked`` at once, with the ERP's error.

A message is identified in the ERP by its idempotency key, so a crash between delivery and the
commit only leads to a re-send that updates the same record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential

from assets.erp.base import (
    BatchRejected,
    Delivered,
    ErpAdapter,
    OutboxMessage,
    Outcome,
    Poison,
    Retry,
    RetryableError,
)
from assets.erp.settings import ErpSettings

log = logging.getLogger(__name__)

STATUSES = ("pending", "sent", "acknowledged", "failed", "parked")
Partition = tuple[str, date]
"""(facility_id, business_date)."""
_LONGEST_DEFERRAL = timedelta(hours=1)


@dataclass(frozen=True)
class DispatchPolicy:
    """Retry and parking rules (``WV_ERP_*``)."""

    attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    park_after: int = 20
    batch_size: int = 50

    @classmethod
    def from_settings(cls, settings: ErpSettings) -> DispatchPolicy:
        return cls(
            settings.erp_retry_attempts,
            settings.erp_backoff_s,
            settings.erp_backoff_max_s,
            settings.erp_park_after,
            settings.erp_batch_size,
        )

    def deferral(self, attempts: int, retry_after: float | None) -> timedelta:
        """How long a message that still fails after ``attempts`` tries waits for the next pass."""
        backoff = timedelta(seconds=self.backoff_s * 2 ** min(attempts, 20))
        return max(min(backoff, _LONGEST_DEFERRAL), timedelta(seconds=retry_after or 0))


@dataclass
class DispatchReport:
    """What one dispatch did."""

    claimed: int = 0
    acknowledged: int = 0
    sent: int = 0
    created: int = 0
    updated: int = 0
    deferred: int = 0
    parked: int = 0
    confirmed_later: int = 0
    """``sent`` messages the ERP acknowledged since an earlier pass."""
    errors: list[str] = field(default_factory=list)

    @classmethod
    def total(cls, reports: Sequence[DispatchReport]) -> DispatchReport:
        """The sum of ``reports`` (one per shard a run dispatched on)."""
        total = cls()
        for report in reports:
            for name, value in vars(report).items():
                setattr(total, name, getattr(total, name) + value)
        return total


def _scope_sql(partitions: Sequence[Partition] | None) -> tuple[str, dict[str, Any]]:
    if partitions is None:
        return "", {}
    return (
        " AND (facility_id, business_date) IN "
        "(SELECT f, d FROM unnest(%(scope_f)s::text[], %(scope_d)s::date[]) AS s(f, d))",
        {"scope_f": [f for f, _ in partitions], "scope_d": [d for _, d in partitions]},
    )


def _deliver_round(adapter: ErpAdapter, messages: Sequence[OutboxMessage]) -> list[Outcome]:
    """One delivery of ``messages``; whole-request failures become per-message outcomes."""
    try:
        outcomes = adapter.deliver(messages)
    except RetryableError as exc:
        return [Retry(adapter.redact(str(exc)), exc.retry_after) for _ in messages]
    except BatchRejected as exc:
        if len(messages) == 1:
            return [Poison(adapter.redact(str(exc)))]
        # One bad record must not park its neighbours: find it by sending one at a time.
        return [outcome for m in messages for outcome in _deliver_round(adapter, [m])]
    if len(outcomes) != len(messages):
        raise RuntimeError(
            f"{adapter.name} adapter returned {len(outcomes)} outcomes for {len(messages)} messages"
        )
    return outcomes


def deliver_with_retry(
    adapter: ErpAdapter,
    messages: Sequence[OutboxMessage],
    policy: DispatchPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[int, Outcome], dict[int, int]]:
    """Final outcome and number of tries per message id, retrying transient failures with backoff.

    The wait before try *n* is ``backoff_s * 2**(n-1)`` (capped at ``backoff_max_s``) or the
    ERP's ``Retry-After``, whichever is longer; a ``Retry-After`` beyond ``backoff_max_s`` ends
    the pass for those messages (they are deferred rather than holding the run).
    """
    outcomes: dict[int, Outcome] = {}
    tries = {m.id: 0 for m in messages}
    pending = list(messages)
    exponential = wait_exponential(multiplier=policy.backoff_s, max=policy.backoff_max_s)

    def server_wait() -> float:
        return max(
            (o.retry_after or 0.0 for m in pending if isinstance(o := outcomes[m.id], Retry)), default=0.0
        )

    def one_round() -> list[OutboxMessage]:
        nonlocal pending
        for message, outcome in zip(pending, _deliver_round(adapter, pending), strict=True):
            tries[message.id] += 1
            outcomes[message.id] = outcome
        pending = [m for m in pending if isinstance(outcomes[m.id], Retry)]
        return pending

    def wait(state: RetryCallState) -> float:
        return max(exponential(state), server_wait())

    def stop(state: RetryCallState) -> bool:
        return stop_after_attempt(policy.attempts)(state) or server_wait() > policy.backoff_max_s

    Retrying(
        stop=stop,
        wait=wait,
        retry=retry_if_result(bool),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )(one_round)
    return outcomes, tries


_CLAIM = """
SELECT id, idempotency_key, kind, facility_id, business_date, payload, attempts
FROM erp_outbox
WHERE status = ANY(%(statuses)s) AND next_attempt_at <= now() AND NOT (id = ANY(%(done)s)){scope}
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""


def _record(
    cur: psycopg.Cursor[Any],
    adapter: ErpAdapter,
    message: OutboxMessage,
    outcome: Outcome,
    tries: int,
    policy: DispatchPolicy,
    report: DispatchReport,
) -> None:
    attempts = message.attempts + tries
    if isinstance(outcome, Delivered):
        status = "acknowledged" if outcome.acknowledged else "sent"
        cur.execute(
            """
            UPDATE erp_outbox SET status = %s, attempts = %s, adapter = %s,
                external_id = coalesce(%s, external_id), last_error = NULL, sent_at = now(),
                acknowledged_at = CASE WHEN %s THEN now() END
            WHERE id = %s
            """,
            (status, attempts, adapter.name, outcome.external_id, outcome.acknowledged, message.id),
        )
        report.acknowledged += outcome.acknowledged
        report.sent += not outcome.acknowledged
        report.created += outcome.created is True
        report.updated += outcome.created is False
        return
    park = isinstance(outcome, Poison) or attempts >= policy.park_after
    error = outcome.error if isinstance(outcome, Poison) else f"{outcome.error} (after {attempts} tries)"
    if park:
        cur.execute(
            "UPDATE erp_outbox SET status = 'parked', attempts = %s, adapter = %s, last_error = %s "
            "WHERE id = %s",
            (attempts, adapter.name, error, message.id),
        )
        report.parked += 1
    else:
        assert isinstance(outcome, Retry)
        cur.execute(
            """
            UPDATE erp_outbox SET status = 'failed', attempts = %s, adapter = %s, last_error = %s,
                next_attempt_at = now() + %s
            WHERE id = %s
            """,
            (attempts, adapter.name, error, policy.deferral(attempts, outcome.retry_after), message.id),
        )
        report.deferred += 1
    report.errors.append(f"{message.idempotency_key} ({message.kind}): {error}")
    log.warning("ERP %s %s %s: %s", adapter.name, message.kind, message.idempotency_key, error)


def dispatch(
    conn: psycopg.Connection,
    adapter: ErpAdapter,
    policy: DispatchPolicy,
    *,
    partitions: Sequence[Partition] | None = None,
    statuses: Sequence[str] = ("pending", "failed"),
    sleep: Callable[[float], None] = time.sleep,
) -> DispatchReport:
    """Deliver every due message (of ``partitions``, or all), batch by batch, then poll acknowledgements.

    ``statuses=("failed",)`` picks up only earlier deliveries whose backoff has expired.
    """
    report = DispatchReport()
    scope, scope_params = _scope_sql(partitions)
    done: list[int] = []
    batch = max(1, min(policy.batch_size, adapter.max_batch))
    while True:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                _CLAIM.format(scope=scope),
                {"done": done, "limit": batch, "statuses": list(statuses), **scope_params},
            ).fetchall()
            if not rows:
                break
            messages = [OutboxMessage(**row) for row in rows]
            done += [m.id for m in messages]
            report.claimed += len(messages)
            outcomes, tries = deliver_with_retry(adapter, messages, policy, sleep)
            for message in messages:
                _record(cur, adapter, message, outcomes[message.id], tries[message.id], policy, report)
    report.confirmed_later = poll_acknowledgements(conn, adapter, partitions)
    return report


def poll_acknowledgements(
    conn: psycopg.Connection, adapter: ErpAdapter, partitions: Sequence[Partition] | None = None
) -> int:
    """Mark ``sent`` messages the ERP has confirmed since as ``acknowledged``; returns how many."""
    scope, params = _scope_sql(partitions)
    with conn.transaction():
        keys = [
            k
            for (k,) in conn.execute(
                "SELECT idempotency_key FROM erp_outbox "
                f"WHERE status = 'sent' AND adapter = %(adapter)s{scope}",
                {"adapter": adapter.name, **params},
            ).fetchall()
        ]
        confirmed = adapter.acknowledgements(keys) if keys else {}
        with conn.cursor() as cur:
            cur.executemany(
                """
                UPDATE erp_outbox SET status = 'acknowledged', acknowledged_at = now(),
                    external_id = coalesce(%s, external_id)
                WHERE idempotency_key = %s AND status = 'sent'
                """,
                [(external_id, key) for key, external_id in confirmed.items()],
            )
    return len(confirmed)


@dataclass(frozen=True)
class Reconciliation:
    """Outbox messages by kind and status, and the ones that need a person."""

    counts: dict[str, dict[str, int]]
    """kind → status → messages (every status present)."""
    attention: list[dict[str, Any]]
    """Parked and failed messages with their last error (at most 100, oldest first)."""

    @property
    def totals(self) -> dict[str, int]:
        return {s: sum(by_status[s] for by_status in self.counts.values()) for s in STATUSES}

    def markdown(self) -> str:
        lines = ["| kind | " + " | ".join(STATUSES) + " |", "|---|" + "---:|" * len(STATUSES)]
        for kind, by_status in sorted(self.counts.items()):
            lines.append(f"| {kind} | " + " | ".join(str(by_status[s]) for s in STATUSES) + " |")
        lines.append("| **all** | " + " | ".join(str(self.totals[s]) for s in STATUSES) + " |")
        return "\n".join(lines)


def _no_counts() -> dict[str, dict[str, int]]:
    return {kind: dict.fromkeys(STATUSES, 0) for kind in ("damage_claim", "discrepancy_report")}


def reconcile(conn: psycopg.Connection, partitions: Sequence[Partition] | None = None) -> Reconciliation:
    """The reconciliation report: sent, acknowledged, failed (and pending, parked) per kind."""
    scope, params = _scope_sql(partitions)
    where = f"WHERE true{scope}"
    counts = _no_counts()
    for kind, status, n in conn.execute(
        f"SELECT kind, status, count(*) FROM erp_outbox {where} GROUP BY 1, 2", params
    ).fetchall():
        counts[kind][status] = int(n)
    with conn.cursor(row_factory=dict_row) as cur:
        attention = cur.execute(
            f"""
            SELECT idempotency_key, kind, facility_id, business_date, status, attempts, last_error,
                   next_attempt_at, created_at
            FROM erp_outbox {where} AND status IN ('parked', 'failed')
            ORDER BY created_at, id LIMIT 100
            """,
            params,
        ).fetchall()
    return Reconciliation(counts, attention)


def merge(reconciliations: Sequence[Reconciliation]) -> Reconciliation:
    """One report from several shards' (counts added, needs-attention rows oldest first, 100 at most)."""
    counts = _no_counts()
    for recon in reconciliations:
        for kind, by_status in recon.counts.items():
            for status, n in by_status.items():
                counts.setdefault(kind, dict.fromkeys(STATUSES, 0))[status] += n
    attention = sorted(
        (r for recon in reconciliations for r in recon.attention), key=lambda r: r["created_at"]
    )
    return Reconciliation(counts, attention[:100])


def requeue(
    conn: psycopg.Connection,
    *,
    statuses: Sequence[str] = ("parked",),
    partitions: Sequence[Partition] | None = None,
    keys: Sequence[str] | None = None,
) -> int:
    """Put parked (or failed) messages back in the queue for the next dispatch; returns how many."""
    scope, params = _scope_sql(partitions)
    key_filter = " AND idempotency_key = ANY(%(keys)s)" if keys is not None else ""
    with conn.transaction():
        return conn.execute(
            f"""
            UPDATE erp_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
            WHERE status = ANY(%(statuses)s){scope}{key_filter}
            """,
            {"statuses": list(statuses), "keys": list(keys or []), **params},
        ).rowcount
