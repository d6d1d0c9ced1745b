"""SIGKILL of the edge and of the ingest worker mid-stream: restarted, they lose and duplicate nothing;
SIGKILL of a supervisor of several workers leaves no orphan behind."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bench.reliability.faults import wait_until
from bench.reliability.pipeline import committed_offsets, read_batches, wait_stored

FACILITY = "FAC-001"


@pytest.mark.timeout(150)
def test_edge_sigkilled_with_events_in_its_outbox_replays_them_after_restart(pipeline, broker, endpoints_for):
    endpoints = endpoints_for(broker)
    ingest = pipeline.ingest(endpoints)
    edge = pipeline.edge(FACILITY, endpoints, cameras=["synthetic://seed=5&fps=10"])
    ingest.start()
    edge.start(wait_events=40)

    broker.freeze()  # acknowledgements stop: events pile up in the outbox
    wait_until(lambda: edge.outbox_events() >= 60, 60, "events waiting in the outbox")
    edge.process.kill()
    stranded = edge.written()
    broker.thaw()

    edge.start(wait_events=stranded + 60)
    assert "unacknowledged events from a previous run; replaying" in edge.process.log_text()
    assert edge.process.stop() == 0  # SIGTERM drains the outbox
    ledger = wait_stored(pipeline.journals, endpoints.database_url, [FACILITY], 60)
    assert ledger.summary()["owed"] >= stranded + 60
    assert not ledger.lost, ledger.summary()
    assert ledger.duplicated == 0
    assert not ledger.extra  # the journal line follows the outbox write; a kill between them is rare


def _stored_ids(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM package_detections")}


def _blocked_writer(conn: psycopg.Connection) -> bool:
    """An ingest connection is inside a write transaction, waiting for the locked table."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE 'wv-ingest%%' AND wait_event_type = 'Lock'"
    ).fetchone()
    return bool(row and row[0])


@pytest.mark.timeout(150)
def test_ingest_sigkilled_mid_batch_leaves_no_partial_batch_and_resumes_from_committed_offsets(
    pipeline, broker, endpoints_for, database_url
):
    endpoints = endpoints_for(broker)
    ingest = pipeline.ingest(endpoints)
    edge = pipeline.edge(FACILITY, endpoints, cameras=["synthetic://seed=6&fps=10"])
    ingest.start()
    edge.start(wait_events=40)
    wait_until(lambda: len(_stored_ids(database_url)) >= 40, 30, "first events stored")

    # A batch holding a decision copies its detections, then waits for `packages`: mid-transaction.
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(database_url, autocommit=True) as observer:
            wait_until(lambda: _blocked_writer(observer), 30, "an ingest batch blocked mid-write")
        ingest.process.kill()
        stored = _stored_ids(database_url)
        topic = f"{endpoints.topic_prefix}detections"
        messages = read_batches(endpoints.bootstrap, topic)
        committed, _ = committed_offsets(endpoints.bootstrap, f"{endpoints.topic_prefix}ingest", topic)
        locker.rollback()

    partial = [m for m in messages if 0 < len(stored & set(m.event_ids)) < len(m.event_ids)]
    assert not partial, "a batch is visible in part"
    behind = [
        m for m in messages if m.offset < committed.get(m.partition, 0) and not stored >= set(m.event_ids)
    ]
    assert not behind, "offsets were committed for messages that are not stored"
    assert any(not stored >= set(m.event_ids) for m in messages), "the killed batch should not be stored"

    ingest.start()
    wait_until(lambda: edge.written() >= len(stored) + 80, 60, "more events after the restart")
    assert edge.process.stop() == 0
    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 60)
    assert not ledger.lost and ledger.duplicated == 0 and not ledger.extra, ledger.summary()

    def caught_up() -> bool:
        done, end = committed_offsets(endpoints.bootstrap, f"{endpoints.topic_prefix}ingest", topic)
        return all(done.get(p, 0) == offset for p, offset in end.items())

    wait_until(caught_up, 30, "committed offsets at the end of every partition")


def _workers(supervisor: int) -> set[int]:
    """Live worker processes (multiprocessing spawns) whose parent is ``supervisor``, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == supervisor and fields[0] != "Z" and b"spawn_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_a_sigkilled_supervisor_takes_its_worker_processes_with_it(pipeline, broker, endpoints_for):
    endpoints = endpoints_for(broker)
    supervisor = pipeline.service(
        "ingest", endpoints, "realtime", "run", "--workers", "2", "--partitions", "3"
    )
    supervisor.process.env["WV_METRICS_PORT"] = "0"  # no scrape here; port + 1 could be anybody's
    supervisor.process.start()
    pid = supervisor.process.pid
    assert pid is not None
    wait_until(lambda: len(_workers(pid)) == 2, 60, "two worker processes")
    workers = _workers(pid)

    supervisor.process.kill()

    wait_until(lambda: not any(_alive(w) for w in workers), 45, "the orphaned workers to exit")
