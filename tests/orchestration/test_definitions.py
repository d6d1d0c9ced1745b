"""The whole code location loads, and its shape is what the committed snapshot says.

When a change to assets, checks, jobs, schedules or sensors is intended, refresh the snapshot with
``WV_UPDATE_SNAPSHOT=1 pytest tests/orchestration/test_definitions.py`` and commit it with the change.
"""

import difflib
import itertools
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from orchestration.settings import OrchestrationSettings

SNAPSHOT = Path(__file__).with_name("code_location_snapshot.json")


def _partitions(definition: dg.PartitionsDefinition | None) -> Any:
    if definition is None:
        return None
    if isinstance(definition, dg.MultiPartitionsDefinition):
        return {d.name: _partitions(d.partitions_def) for d in definition.partitions_defs}
    if isinstance(definition, dg.TimeWindowPartitionsDefinition):
        return {"cron": definition.cron_schedule, "start": definition.start.date().isoformat()}
    if isinstance(definition, dg.StaticPartitionsDefinition):
        return "static: WV_FACILITIES"
    return type(definition).__name__


def snapshot(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "observable": node.is_observable,
            "has_description": bool(node.description),
            "freshness": node.freshness_policy is not None,
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(check_key)
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {"blocking": spec.blocking}
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "partitions": _partitions(job.partitions_def),
        }
    schedules = {
        s.name: {"job": s.job_name, "cron": s.cron_schedule, "timezone": s.execution_timezone}
        for s in sorted(defs.schedules or [], key=lambda s: s.name)
        if isinstance(s, dg.ScheduleDefinition)
    }
    sensors = {
        s.name: {"jobs": sorted(t.job_name for t in s.targets), "status": s.default_status.value}
        for s in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    return {"assets": assets, "checks": checks, "jobs": jobs, "schedules": schedules, "sensors": sensors}


@pytest.mark.timeout(120)
def test_code_location_matches_snapshot() -> None:
    from orchestration.definitions import defs

    defs.validate_loadable(defs)
    current = json.dumps(snapshot(defs), indent=2, sort_keys=True) + "\n"
    if os.environ.get("WV_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"{SNAPSHOT.name} is missing: run with WV_UPDATE_SNAPSHOT=1 and commit it"
    expected = SNAPSHOT.read_text()
    diff = "".join(
        difflib.unified_diff(expected.splitlines(True), current.splitlines(True), "snapshot", "code")
    )
    assert not diff, f"code location changed (WV_UPDATE_SNAPSHOT=1 to accept):\n{diff}"


def test_lineage_runs_from_detections_to_the_production_model() -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    path = ["package_detections", "verified_samples", "drift_evaluation"]
    for upstream, downstream in itertools.pairwise(path):
        assert dg.AssetKey(upstream) in graph.get(dg.AssetKey(downstream)).parent_keys
    chain = ["retraining_dataset", "candidate_model", "candidate_evaluation", "production_model"]
    for upstream, downstream in itertools.pairwise(chain):
        assert dg.AssetKey(upstream) in graph.get(dg.AssetKey(downstream)).parent_keys
    assert dg.AssetKey("verified_samples") in graph.get(dg.AssetKey("retraining_dataset")).parent_keys


def test_nothing_automates_the_production_model() -> None:
    from orchestration.definitions import defs

    for job in defs.resolve_all_job_defs():
        if not job.name.startswith("__"):
            assert dg.AssetKey("production_model") not in job.asset_layer.executable_asset_keys, job.name
    assert defs.resolve_asset_graph().get(dg.AssetKey("production_model")).automation_condition is None


def test_nightly_schedule_asks_for_yesterday_at_every_facility() -> None:
    from orchestration.schedules import nightly_model_quality_schedule, weekly_hard_examples_schedule

    settings = OrchestrationSettings.load()
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2025, 3, 11, 2), resources={"settings": settings}
    )
    requests = nightly_model_quality_schedule(context)
    assert isinstance(requests, list)
    assert [r.partition_key for r in requests] == [
        dg.MultiPartitionKey({"date": "2025-03-10", "facility": f}) for f in settings.facilities
    ]
    weekly = weekly_hard_examples_schedule(
        dg.build_schedule_context(scheduled_execution_time=datetime(2025, 3, 10, 3))
    )
    assert isinstance(weekly, dg.RunRequest) and weekly.partition_key == "2025-03-03"
