"""The project's Dagster UI in a real browser: the lineage an analyst browses, and a backfill an
on-call engineer launches from the UI for a date range and two facilities.

Starts ``wv ui --background`` (webserver and daemon) on a free port with the test database and a
Dagster storage database of its own, drives Debian's Chromium through Playwright, and saves
screenshots under ``.local/test-artifacts/browser/``. Skipped only where Chromium or Playwright
is not installed (``make setup`` installs both).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from bench.fixtures.events import EventFactory
from realtime.storage.writer import EventWriter, prepare

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".local" / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
WV = str(Path(sys.executable).with_name("wv"))
FACILITIES = ("FAC-001", "FAC-002")
PACKAGES = 12
"""Decisions written per facility-day before the backfill (each with three detections)."""

if not CHROMIUM.exists():
    pytest.skip(
        "Chromium is not installed (Debian package `chromium`, installed by `make setup`)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_dbname(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


@pytest.fixture
def days() -> list[str]:
    """The backfill range: the two days before yesterday (closed daily partitions)."""
    today = datetime.now(UTC).date()
    return [(today - timedelta(days=n)).isoformat() for n in (3, 2)]


@pytest.fixture
def decisions_written(db: psycopg.Connection, database_url: str, days: list[str]) -> None:
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        for i, facility in enumerate(FACILITIES):
            for j, day in enumerate(days):
                start = datetime.fromisoformat(day).replace(hour=10, tzinfo=UTC)
                factory = EventFactory(facility, seed=10 * i + j, start=start, step=timedelta(seconds=20))
                EventWriter().write(conn, list(factory.stream(PACKAGES, detections=3)))
        conn.commit()


@pytest.fixture
def ui(database_url: str, tmp_path: Path) -> Iterator[str]:
    """``wv ui --background`` on a free port; its Dagster storage is a database of its own, dropped after."""
    storage = _with_dbname(database_url, urlsplit(database_url).path.strip("/") + "_browser_dagster")
    env = {
        **os.environ,
        "WV_STATE_DIR": str(tmp_path),
        "WV_DAGSTER_PORT": str(_free_port()),
        "WV_DATABASE_URL": database_url,
        "WV_DAGSTER_DATABASE_URL": storage,
    }
    started = subprocess.run([WV, "ui", "--background"], env=env, capture_output=True, text=True, timeout=240)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield re.search(r"http://\S+", started.stdout).group(0)  # type: ignore[union-attr]
    finally:
        subprocess.run([WV, "ui", "stop"], env=env, capture_output=True, text=True, timeout=60)
        admin = _with_dbname(database_url, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            name = urlsplit(storage).path.strip("/")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _lineage(page: sync_api.Page, base: str, asset: str, shown: str) -> tuple[set[str], set[str]]:
    """(upstream, downstream) asset names in the Lineage section of an asset's page, read once the
    neighbour ``shown`` is listed (the lists load after the page)."""
    page.goto(f"{base}/assets/{asset}", wait_until="domcontentloaded")
    page.get_by_text("Downstream assets", exact=True).wait_for()
    deadline = time.monotonic() + 60
    while True:
        text = page.locator("body").inner_text()
        upstream, _, rest = text.split("Upstream assets", 1)[1].partition("Downstream assets")
        names = (
            set(re.findall(r"[a-z][a-z0-9_]+", upstream)),
            set(re.findall(r"[a-z][a-z0-9_]+", rest.split("Definition", 1)[0])),
        )
        if shown in names[0] | names[1] or time.monotonic() > deadline:
            return names
        time.sleep(0.5)


def _backfill_status(page: sync_api.Page) -> str:
    """The value shown under 'Status' on a backfill's page (the page refreshes itself)."""
    found = re.search(r"\nStatus\n([^\n]+)\n", page.locator("body").inner_text())
    return found.group(1).strip() if found else ""


@pytest.mark.timeout(360)
def test_lineage_and_a_backfill_launched_from_the_ui(
    ui: str, decisions_written: None, db: psycopg.Connection, days: list[str]
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1800, "height": 1000})
        page.set_default_timeout(60_000)

        # The global asset graph, every group expanded (the graph's own shortcut, ⌥E).
        page.goto(f"{ui}/asset-groups", wait_until="domcontentloaded")
        page.get_by_text(re.compile(r"^Materialize all")).wait_for()
        page.keyboard.press("Alt+e")
        graph = page.locator("main") if page.locator("main").count() else page.locator("body")
        for asset in ("package_detections", "verified_samples", "drift_evaluation", "retraining_dataset",
                      "candidate_model", "production_model", "erp_sync"):  # fmt: skip
            graph.get_by_text(asset, exact=True).first.wait_for()
        page.screenshot(path=ARTIFACTS / "asset_lineage.png")

        # Each link of the chain, as the asset pages list it.
        chain = [
            ("package_detections", "verified_samples"),
            ("verified_samples", "drift_evaluation"),
            ("drift_evaluation", "retraining_dataset"),
            ("verified_samples", "retraining_dataset"),
            ("retraining_dataset", "candidate_model"),
            ("candidate_model", "candidate_evaluation"),
            ("candidate_evaluation", "production_model"),
        ]
        for upstream, asset in chain:
            assert upstream in _lineage(page, ui, asset, upstream)[0], (
                f"{asset} should list {upstream} upstream"
            )
        analytics_up, analytics_down = _lineage(page, ui, "facility_daily_analytics", "erp_sync")
        assert "package_detections" in analytics_up
        assert {"erp_sync", "network_weekly_report"} <= analytics_down
        page.screenshot(path=ARTIFACTS / "facility_daily_analytics.png")

        # Materialize… → partition dialog: a date range and two facilities → Launch backfill.
        page.locator("button", has_text="Materialize").first.click()
        dialog = page.get_by_role("dialog")
        dates = dialog.get_by_placeholder(re.compile("^ex: "))
        dates.fill(f"[{days[0]}...{days[-1]}]")
        dates.press("Enter")
        dialog.get_by_text("Select a partition or create one").click()
        for facility in FACILITIES:
            page.locator("label", has_text=facility).first.click()
        dialog.get_by_text("Launch runs to materialize").click()  # closes the facility list
        dialog.get_by_text(f"{len(days) * len(FACILITIES)} partitions").wait_for()
        page.screenshot(path=ARTIFACTS / "backfill_dialog.png")
        dialog.get_by_role("button", name="Launch backfill").click()

        # The toast links to the backfill; its page updates until every partition succeeded.
        page.locator("a[href^='/runs/b/']", has_text="View").first.click()
        page.wait_for_url(re.compile(r"/runs/b/"))
        deadline = time.monotonic() + 240
        while (status := _backfill_status(page)) in (
            "",
            "Requested",
            "In progress",
        ) and time.monotonic() < deadline:
            time.sleep(2)
        if status == "Succeeded":
            page.get_by_text("100% completed").wait_for(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "backfill_finished.png")
        assert status == "Succeeded", page.locator("body").inner_text()[-1500:]
        browser.close()

    rows = db.execute(
        "SELECT facility_id, day::text, decisions FROM facility_daily_analytics ORDER BY 1, 2"
    ).fetchall()
    assert rows == [(f, d, PACKAGES) for f in FACILITIES for d in days]
