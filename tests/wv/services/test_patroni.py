"""``WV_SERVICES_HA=postgres``: `wv services up` starts etcd and two Patroni members, idempotently.

Bringing a dead member back (`up` again: ``PatroniService.heal``) is exercised by the failover
test in tests/reliability/ha/, whose rejoin goes through it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from wv.services.base import process_matches
from wv.services.manager import ServiceManager, services_for


@pytest.mark.timeout(180)
def test_up_starts_a_leader_and_a_synchronous_standby_behind_one_url_and_down_stops_them(
    tmp_path: Path,
) -> None:
    manager = ServiceManager(tmp_path, environ={}, services=services_for(frozenset({"postgres"})))

    try:
        [state] = manager.up(["postgres"])  # although the default single server answers

        assert state.origin == "local" and state.healthy, state.line()
        assert state.url.endswith("/warehouse_vision?target_session_attrs=read-write")
        assert state.url.count("127.0.0.1:") == 2
        etcd, *members = state.details
        assert etcd.startswith("etcd") and etcd.endswith("healthy"), state.line()
        roles = sorted(line.split()[2] for line in members)
        assert roles == ["leader", "sync_standby"], state.line()
        with psycopg.connect(state.url.replace("/warehouse_vision?", "/postgres?")) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names')"
            ).fetchone()
        assert row is not None and row[0] is False and row[1]  # the leader, waiting for its standby
        assert (tmp_path / "services.env").read_text() == f"WV_DATABASE_URL={state.url}\n"

        [again] = manager.up(["postgres"])
        assert (again.url, again.pid) == (state.url, state.pid)

    finally:
        stopped = manager.down(["postgres"], purge=True)
    assert stopped == ["postgres"]
    assert state.pid is not None and not process_matches(state.pid, "etcd")
    assert not (tmp_path / "services" / "postgres-ha").exists()
