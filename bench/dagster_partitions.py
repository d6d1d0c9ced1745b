"""Dagster at the network's partition count (issue 19, item 4).

    python -m bench.dagster_partitions [--quick] [--facilities 47] [--years 3] [--days 30]

47 facilities (``WV_FACILITIES`` = FAC-001 … FAC-047) × three years of days
(``WV_PARTITIONS_START`` = three years before today): ≈ 51,500 date × facility partitions. A
scratch application database (migrated, the 47 facilities seeded) and a scratch Dagster database
back an instance installed by ``orchestration.instance.prepare_instance`` from
``dagster.yaml.template`` (queued runs, 4 run slots of which backfills hold at most 2, pools of 2,
the default run launcher: one process per run), and ``wv ui``'s own start-up runs the webserver
and the daemon. Then, on this machine:

- **definitions load**: a fresh Python process imports ``orchestration.definitions`` (what a code
  server does) and builds and serializes the repository snapshot the webserver receives; the
  webserver's start until its code location answers;
- **the UI's GraphQL queries over HTTP** (median of 3): the asset's partitions page
  (``PartitionHealthQuery``, verbatim from the webserver's bundle) and the asset graph (the
  location's asset nodes plus the ``AssetGraphLiveQuery`` part with partition stats and checks),
  before and after the backfill;
- **a sensor tick**: each sensor of ``orchestration/sensors.py`` that ticks on its own evaluated
  in this process against the instance, the drift sensor over one drift evaluation per
  facility-day of the backfill window (first tick reads them all, the next one none), plus the
  daemon's own tick durations for every sensor;
- **a backfill of 47 facilities × 30 days** (``--quick``: 3 days) of ``facility_daily_analytics`` +
  ``erp_sync`` launched through the same GraphQL mutation as ``wv analytics backfill``, timed from
  launch to the backfill's completion, with its run count and launch rate.

Baseline, same run: ``import dagster`` alone in a fresh process (the floor of any code server or
run worker start).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._report import write_report
from bench._services import scratch_database

ROOT = Path(__file__).resolve().parent.parent
ASSET = "facility_daily_analytics"

PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
              ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
            }
          }
        }
      }
    }
  }
}
"""
"""The asset page's partition tab, as the webserver's bundle sends it (dagster-webserver 1.13)."""

GRAPH_DEFINITION_QUERY = """
query AssetGraphDefinitions {
  assetNodes {
    id
    assetKey { path }
    groupName
    isPartitioned
    isObservable
    isMaterializable
    opNames
    kinds
    description
    dependencyKeys { path }
    dependedByKeys { path }
    partitionDefinition { description type dimensionTypes { name type } }
    backfillPolicy { description }
    automationCondition { label expandedLabel }
  }
}
"""
"""The asset graph's shape: every node, its edges and its partitioning (the location's asset nodes)."""

GRAPH_LIVE_QUERY = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) {
    id
    opNames
    assetKey { path }
    assetMaterializations(limit: 1) { timestamp runId stepKey }
    assetObservations(limit: 1) { timestamp runId stepKey }
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          canExecuteIndividually
          executionForLatestMaterialization { id runId status timestamp stepKey evaluation { severity } }
        }
      }
    }
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
  }
  assetsLatestInfo(assetKeys: $assetKeys) {
    id
    assetKey { path }
    unstartedRunIds
    inProgressRunIds
    latestRun { id status endTime }
  }
}
"""
"""The asset graph's live part, as the UI polls it: latest events, checks and partition counts."""

LOCATION_QUERY = """
query Location { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions timestamp endTimestamp }
    ... on PythonError { message }
  }
}
"""

SENSOR_TICKS_QUERY = """
query SensorTicks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 50) { status timestamp endTimestamp } } }
  }
}
"""

_LOAD_SCRIPT = """
import json, time
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
from orchestration.definitions import defs
t2 = time.perf_counter()
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from assets.common.partitions import daily_facility_partitions
snap = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
t3 = time.perf_counter()
count = len(daily_facility_partitions.get_partition_keys())
t4 = time.perf_counter()
print(json.dumps({"import_dagster_s": t1 - t0, "definitions_s": t2 - t1, "snapshot_s": t3 - t2,
                  "snapshot_bytes": len(snap), "partitions": count, "enumerate_keys_s": t4 - t3}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_of(n: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    runs = [timed(fn) for _ in range(n)]
    return statistics.median(t for t, _ in runs), runs[-1][1]


def load_definitions(env: dict[str, str]) -> dict[str, Any]:
    """Import the code location in a fresh process, as a code server or a run worker does."""
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def import_dagster_only(env: dict[str, str]) -> float:
    script = "import time; t = time.perf_counter(); import dagster; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def scratch_dagster_database(app_url: str) -> Iterator[str]:
    url = app_url + "_dagster"
    try:
        yield url
    finally:
        name = url.rsplit("/", 1)[1]
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class GraphQL:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        from orchestration.backfills import post

        return post(self.url, query, variables or {}, timeout_s=600.0)


def wait_for_location(gql: GraphQL, timeout_s: float = 600.0) -> float:
    """Seconds until the code location is loaded (raises on a load error)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        entries = gql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            for e in entries:
                if e["locationOrLoadError"]["__typename"] == "PythonError":
                    raise RuntimeError(f"code location failed to load: {e['locationOrLoadError']['message']}")
            return time.perf_counter() - start
        time.sleep(0.5)
    raise RuntimeError("code location did not load in time")


def partitions_page(gql: GraphQL) -> dict[str, Any]:
    node = gql(PARTITION_HEALTH_QUERY, {"assetKey": {"path": [ASSET]}})["assetNodeOrError"]
    return {
        "keys": sum(len(d["partitionKeys"]) for d in node["partitionKeysByDimension"]),
        "ranges": len(node["assetPartitionStatuses"]["ranges"]),
    }


def asset_graph(gql: GraphQL) -> dict[str, Any]:
    nodes = gql(GRAPH_DEFINITION_QUERY)["assetNodes"]
    keys = [{"path": n["assetKey"]["path"]} for n in nodes]
    live = gql(GRAPH_LIVE_QUERY, {"assetKeys": keys})["assetNodes"]
    stats = {tuple(n["assetKey"]["path"]): n["partitionStats"] for n in live}
    return {"nodes": len(nodes), "stats": stats.get((ASSET,))}


def seed_drift_evaluations(instance: Any, keys: list[str]) -> None:
    """One ``drift_evaluation`` materialization per facility-day (what the nightly runs leave)."""
    import dagster as dg

    for i, key in enumerate(keys):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "drift_evaluation", partition=key, metadata={"accuracy": 0.97 - (i % 7) * 0.001}
            )
        )


def sensor_ticks(instance: Any, settings: Any) -> dict[str, float]:
    """Evaluate the cursor-driven sensors in process against the instance: first tick, then a quiet one."""
    import dagster as dg

    from assets.common.resources import ModelRegistryResource
    from orchestration.sensors import drift_retraining_sensor, model_promotion_sensor

    results: dict[str, float] = {}
    resources = {
        "settings": settings,
        "model_registry": ModelRegistryResource(
            database_url=settings.database_url, models_dir=str(settings.models_dir)
        ),
    }
    for sensor in (drift_retraining_sensor, model_promotion_sensor):
        cursor = None
        for label in ("first", "next"):
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                start = time.perf_counter()
                data = sensor.evaluate_tick(context)
                elapsed = time.perf_counter() - start
            cursor = data.cursor
            results[f"{sensor.name} ({label} tick)"] = elapsed
    return results


def daemon_sensor_ticks(gql: GraphQL) -> dict[str, float]:
    """Median duration of the daemon's own ticks of every sensor (timestamp → endTimestamp)."""
    from orchestration.sensors import SENSORS

    medians = {}
    for sensor in SENSORS:
        selector = {
            "repositoryLocationName": "warehouse_vision",
            "repositoryName": "__repository__",
            "sensorName": sensor.name,
        }
        found = gql(SENSOR_TICKS_QUERY, {"selector": selector})["sensorOrError"]
        ticks = found.get("sensorState", {}).get("ticks", []) if found["__typename"] == "Sensor" else []
        spans = [t["endTimestamp"] - t["timestamp"] for t in ticks if t.get("endTimestamp")]
        if spans:
            medians[sensor.name] = statistics.median(spans)
    return medians


def run_backfill(gql: GraphQL, instance: Any, keys: list[str], timeout_s: float) -> dict[str, Any]:
    from dagster._core.storage.dagster_run import RunsFilter
    from dagster._core.storage.tags import BACKFILL_ID_TAG

    from orchestration.backfills import LAUNCH_BACKFILL, backfill_id, launch_variables

    start = time.time()
    launched = gql(LAUNCH_BACKFILL, launch_variables(keys, title="bench.dagster_partitions"))
    backfill = backfill_id(launched, "launchPartitionBackfill")
    launch_s = time.time() - start
    status = "REQUESTED"
    while time.time() - start < timeout_s:
        answer = gql(BACKFILL_QUERY, {"id": backfill})["partitionBackfillOrError"]
        status = answer.get("status", answer["__typename"])
        if status not in ("REQUESTED", "CANCELING"):
            break
        time.sleep(1.0)
    done_s = time.time() - start
    records = instance.get_run_records(filters=RunsFilter(tags={BACKFILL_ID_TAG: backfill}))
    first_tries = [r for r in records if "dagster/retry_number" not in r.dagster_run.tags]
    created = sorted(r.create_timestamp.timestamp() for r in first_tries)
    durations = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]
    spread = created[-1] - created[0] if len(created) > 1 else 0.0
    return {
        "backfill": backfill,
        "status": status,
        "launch_s": launch_s,
        "done_s": done_s,
        "runs": len(first_tries),
        "retried_runs": len(records) - len(first_tries),
        "failed_runs": sum(1 for r in records if r.dagster_run.status.value != "SUCCESS"),
        "first_run_s": created[0] - start if created else float("nan"),
        "runs_created_per_s": (len(created) - 1) / spread if spread > 0 else float("nan"),
        "mean_run_s": statistics.mean(durations) if durations else float("nan"),
    }


def log_errors(home: Path) -> dict[str, int]:
    """Code-server failures the daemon logged: start-up timeouts, request timeouts, lost heartbeats."""
    text = (home / "logs" / "daemon.log").read_text(errors="replace")
    return {
        "code server start timed out": text.count("Timed out waiting for gRPC server to start"),
        "code server request timed out": text.count("User code server request timed out"),
        "code server lost its heartbeat": text.count("No heartbeat received"),
        "backfill failed (location not loaded)": text.count("Backfill failed for"),
    }


def _keep_config(prepare: Callable[..., dict[str, str]], settings: Any, home: Path | None) -> dict[str, str]:
    """``prepare_instance`` (re-installs the template), then the patient code-server settings again."""
    env = prepare(settings, home)
    with (Path(env["DAGSTER_HOME"]) / "dagster.yaml").open("a") as config:
        config.write("\ncode_servers:\n  local_startup_timeout: 600\n")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="backfill 3 days instead of 30")
    parser.add_argument("--facilities", type=int, default=47)
    parser.add_argument("--years", type=int, default=3, help="years of daily partitions")
    parser.add_argument("--days", type=int, default=None, help="days of the backfill (default 30, quick 3)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each GraphQL query")
    parser.add_argument("--backfill-timeout", type=float, default=3600.0)
    parser.add_argument(
        "--patient-code-servers",
        action="store_true",
        help="add `code_servers: local_startup_timeout: 600` to the instance's dagster.yaml and "
        "DAGSTER_GRPC_TIMEOUT_SECONDS=300 (Dagster's defaults: 180 s and 60 s), the change proposed for "
        "dagster.yaml.template on a starved machine",
    )
    args = parser.parse_args()
    days = args.days or (3 if args.quick else 30)

    today = datetime.now(UTC).date()
    facilities = [f"FAC-{i:03d}" for i in range(1, args.facilities + 1)]
    state = Path(tempfile.mkdtemp(prefix="wv-bench-dagster-"))
    report_state = os.environ.get("WV_STATE_DIR")
    os.environ.update(
        {
            "WV_FACILITIES": ",".join(facilities),
            "WV_PARTITIONS_START": (today - timedelta(days=365 * args.years)).isoformat(),
            "WV_ERP_ADAPTER": "files",
            "TQDM_DISABLE": "1",
            "GX_ANALYTICS_ENABLED": "false",
        }
    )
    from wv.settings import PlatformSettings

    platform = PlatformSettings.load()
    metrics: dict[str, float] = {}
    baseline: dict[str, float] = {}
    rows: list[dict[str, object]] = []

    def row(what: str, value: str, note: str = "") -> None:
        rows.append({"measure": what, "value": value, "note": note})
        print(f"  {what}: {value} {note}", file=sys.stderr, flush=True)

    with (
        scratch_database(platform, "wv_bench_dp") as app_url,
        scratch_dagster_database(app_url) as dagster_url,
    ):
        os.environ.update(
            {
                "WV_DATABASE_URL": app_url,
                "WV_DAGSTER_DATABASE_URL": dagster_url,
                "WV_STATE_DIR": str(state),
                "WV_DAGSTER_PORT": str(free_port()),
            }
        )
        from orchestration import cli
        from orchestration.instance import apply_env, prepare_instance
        from orchestration.settings import OrchestrationSettings

        settings = OrchestrationSettings.load()
        env = {**os.environ, **prepare_instance(settings, cli.dagster_home(settings))}
        if args.patient_code_servers:
            os.environ["DAGSTER_GRPC_TIMEOUT_SECONDS"] = env["DAGSTER_GRPC_TIMEOUT_SECONDS"] = "300"
            with (cli.dagster_home(settings) / "dagster.yaml").open("a") as config:
                config.write("\ncode_servers:\n  local_startup_timeout: 600\n")
            _orig_prepare = cli.prepare_instance
            cli.prepare_instance = lambda s, h=None: _keep_config(_orig_prepare, s, h)  # type: ignore[assignment]

        baseline["import_dagster_s"] = import_dagster_only(env)
        loaded = load_definitions(env)
        metrics.update({f"definitions.{k}": float(v) for k, v in loaded.items()})
        partitions = int(loaded["partitions"])
        row(
            "partitions (date × facility)",
            f"{partitions:,}",
            f"{len(facilities)} facilities × {partitions // len(facilities)} days",
        )
        row("import dagster (fresh process)", f"{baseline['import_dagster_s']:.2f} s", "baseline")
        row("definitions load (import orchestration.definitions)", f"{loaded['definitions_s']:.2f} s")
        row(
            "repository snapshot (build + serialize)",
            f"{loaded['snapshot_s']:.3f} s",
            f"{loaded['snapshot_bytes'] / 1e6:.2f} MB",
        )
        row("enumerate every partition key", f"{loaded['enumerate_keys_s']:.2f} s")

        started, address = timed(lambda: cli.start(settings, wait_s=900.0))
        try:
            gql = GraphQL(address)
            location_s = wait_for_location(gql)
            metrics["webserver_start_s"] = started
            metrics["location_loaded_s"] = location_s
            row(
                "webserver + daemon start until it answers",
                f"{started:.1f} s",
                "includes the code server's load",
            )

            for label in ("before the backfill",):
                page_s, page = median_of(args.repeat, lambda: partitions_page(gql))
                graph_s, graph = median_of(args.repeat, lambda: asset_graph(gql))
                metrics["partitions_page_s"] = page_s
                metrics["asset_graph_s"] = graph_s
                row(
                    f"partitions page ({label})",
                    f"{page_s:.2f} s",
                    f"{page['keys']} dimension keys, {page['ranges']} ranges",
                )
                row(
                    f"asset graph ({label})",
                    f"{graph_s:.2f} s",
                    f"{graph['nodes']} assets; {ASSET} {graph['stats']}",
                )

            from orchestration.backfills import partition_keys

            first = today - timedelta(days=days)
            keys = partition_keys(facilities, first, today - timedelta(days=1))
            apply_env(env)
            import dagster as dg

            with dg.DagsterInstance.get() as instance:
                seed_s, _ = timed(lambda: seed_drift_evaluations(instance, keys))
                row(
                    "seed drift evaluations",
                    f"{len(keys):,} in {seed_s:.1f} s",
                    "one per facility-day of the window",
                )
                for name, elapsed in sensor_ticks(instance, settings).items():
                    metrics[f"sensor.{name}"] = elapsed
                    row(
                        f"sensor tick: {name}", f"{elapsed * 1000:.0f} ms", "in process, against the instance"
                    )

                result = run_backfill(gql, instance, keys, args.backfill_timeout)
            for k, v in result.items():
                if isinstance(v, int | float):
                    metrics[f"backfill.{k}"] = float(v)
            with psycopg.connect(app_url) as conn:
                rollups = conn.execute("SELECT count(*) FROM facility_daily_analytics").fetchone()
            written = int(rollups[0]) if rollups else 0
            metrics["backfill.rollup_rows"] = written
            row(
                f"backfill {len(facilities)} facilities × {days} days ({len(keys):,} facility-days)",
                f"{result['done_s']:.1f} s",
                f"{result['status']}; {result['runs']} runs + {result['retried_runs']} retries "
                f"({result['failed_runs']} not successful), {written:,} rollup rows",
            )
            row("  launch mutation answered", f"{result['launch_s']:.2f} s")
            row("  first run created after", f"{result['first_run_s']:.1f} s")
            row("  runs created per second", f"{result['runs_created_per_s']:.2f}")
            row("  mean run duration", f"{result['mean_run_s']:.1f} s")

            page_s, page = median_of(args.repeat, lambda: partitions_page(gql))
            graph_s, graph = median_of(args.repeat, lambda: asset_graph(gql))
            metrics["partitions_page_after_s"] = page_s
            metrics["asset_graph_after_s"] = graph_s
            row("partitions page (after the backfill)", f"{page_s:.2f} s", f"{page['ranges']} ranges")
            row("asset graph (after the backfill)", f"{graph_s:.2f} s", f"{ASSET} {graph['stats']}")
            for name, elapsed in daemon_sensor_ticks(gql).items():
                metrics[f"daemon_sensor.{name}"] = elapsed
                row(
                    f"daemon sensor tick: {name}",
                    f"{elapsed * 1000:.0f} ms",
                    "median of its ticks during the run",
                )
        finally:
            cli.stop(settings)
        for what, count in log_errors(cli.dagster_home(settings)).items():
            metrics[f"daemon_log.{what}"] = count
            row(f"daemon log: {what}", str(count), "times, over the whole run")
    if report_state is None:
        os.environ.pop("WV_STATE_DIR", None)
    else:
        os.environ["WV_STATE_DIR"] = report_state
    path = write_report("dagster_partitions", metrics, baseline, rows)
    print(f"\nJSON: {path}; instance state in {state}")


if __name__ == "__main__":
    main()
