"""The week's Dagster work, run in this process against the demo's PostgreSQL-backed instance.

Runs go through the real jobs of the code location (``orchestration.definitions``) with
``execute_in_process`` on the persistent instance, so every run, materialization and check
result is in the storage the Dagster UI reads afterwards. The retraining sensors (a drop, a
labeling campaign's end) are the real sensors, evaluated against that instance with their cursors
carried from tick to tick; each run they ask for is launched with the tags the daemon would give
it (sensor name and run key), so a daemon started later recognises the request as already served
and never launches it twice.
"""

from __future__ import annotations

from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wv.demo.environment import DemoEnvironment

if TYPE_CHECKING:
    import dagster as dg

SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_KEY_TAG = "dagster/run_key"


@dataclass(frozen=True)
class RetrainingSize:
    """How much work retraining does in the demo besides its steps (``WV_RETRAIN_STEPS``, which the
    sensor puts in its run request); the job's defaults are sized for a GPU."""

    batch_size: int | None = None
    """None: the job's own batch size."""
    lookback_days: int = 1
    """The week is short: the newest day of verified samples (the drifted one) plus the replay slice
    (the job's own: a whole-backbone fine-tune after a campaign forgot the frozen test set on 48)."""
    test_frames: int = 100
    parity_frames: int = 32
    calibration_frames: int = 16
    reference_frames: int = 24


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    job: str
    partition: str | None = None


class DagsterSession:
    """The code location and instance, loaded once; call after ``DemoEnvironment.apply()``."""

    def __init__(self, env: DemoEnvironment) -> None:
        import dagster as dg

        from orchestration.definitions import build_definitions
        from orchestration.instance import apply_env, dagster_home, prepare_instance
        from orchestration.settings import OrchestrationSettings

        settings = OrchestrationSettings.load()
        home = dagster_home(settings)
        apply_env(prepare_instance(settings, home))
        self.env = env
        self.settings = settings
        self.defs = build_definitions(settings)
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.sensor_cursors: dict[str, str | None] = {}
        self.log = env.logs / "dagster-runs.log"

    def close(self) -> None:
        self.instance.dispose()

    # --- run configuration --------------------------------------------------------------------
    def resources_config(self) -> dict[str, Any]:
        """The simulator answers verification tasks; ERP files go to the demo's folder."""
        labeling = self.env.root / "labeling"
        return {
            "labeling": {
                "config": {
                    "verifier": "ground-truth",
                    "export_dir": str(labeling / "tasks"),
                    "import_dir": str(labeling / "verified"),
                    "truth_dir": str(labeling / "truth"),
                    "label_studio_url": self.settings.label_studio_url,
                }
            },
            "erp": {"config": {"files_dir": str(self.env.erp_dir)}},
        }

    def _run(
        self,
        job_name: str,
        partition: dg.MultiPartitionKey | str | None = None,
        ops: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        assets: list[str] | None = None,
    ) -> RunOutcome:
        import dagster as dg

        job = self.defs.resolve_job_def(job_name)
        run_config: dict[str, Any] = {
            "resources": self.resources_config(),
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        }
        if ops:
            run_config["ops"] = ops
        # The run's console log (and anything its steps print) goes to the demo's log file; the
        # UI shows the same events from the instance.
        with self.log.open("a") as out, redirect_stdout(out), redirect_stderr(out):
            result = job.execute_in_process(
                run_config=run_config,
                instance=self.instance,
                partition_key=partition,
                tags={"wv/demo": self.env.stamp, **(tags or {})},
                raise_on_error=False,
                asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
            )
        return RunOutcome(result.run_id, result.success, job_name, str(partition) if partition else None)

    # --- the week's jobs ------------------------------------------------------------------------
    def facility_day(self, job_name: str, day: date, facility: str) -> RunOutcome:
        import dagster as dg

        key = dg.MultiPartitionKey({"date": day.isoformat(), "facility": facility})
        return self._run(job_name, key, tags={"wv/facility": facility})

    def nightly_quality(self, day: date, facility: str) -> RunOutcome:
        """``nightly_model_quality``: verified samples, then drift evaluation."""
        return self.facility_day("nightly_model_quality", day, facility)

    def nightly_analytics(self, day: date, facility: str) -> RunOutcome:
        """``facility_nightly_analytics``: the facility-day rollup, then the ERP sync of its outbox."""
        return self.facility_day("facility_nightly_analytics", day, facility)

    def hard_examples(self, monday: date) -> RunOutcome:
        """The week's hard examples out to labeling (Label Studio when it runs) and their labels back."""
        return self._run(
            "weekly_hard_examples", monday.isoformat(), assets=["hard_example_export", "hard_example_labels"]
        )

    def canary_comparison(self) -> RunOutcome:
        """The running canary against production (recorded on the instance like a scheduled run)."""
        import dagster as dg

        from assets.retraining.canary import canary_comparison

        with self.log.open("a") as out, redirect_stdout(out), redirect_stderr(out):
            result = dg.materialize(
                [canary_comparison],
                resources=self.defs.resources,
                instance=self.instance,
                tags={"wv/demo": self.env.stamp},
                raise_on_error=False,
            )
        return RunOutcome(result.run_id, result.success, "canary_comparison")

    def weekly_report(self, monday: date) -> RunOutcome:
        return self._run("weekly_network_report", monday.isoformat())

    # --- the retraining sensors and retraining ------------------------------------------------
    def retraining_requests(self) -> list[tuple[str, dg.RunRequest]]:
        """One tick of each real retraining sensor against the instance — ``drift_retraining_sensor``
        (a drop) and ``campaign_retraining_sensor`` (a labeling campaign ended) — with each sensor's
        cursor carried from tick to tick; the requests with the sensor that made them. A request
        whose run key already has a run is dropped, as the daemon drops it (the campaign sensor sees
        its campaign's end again every night and relies on that)."""
        import dagster as dg

        from orchestration.sensors import campaign_retraining_sensor, drift_retraining_sensor

        requests: list[tuple[str, dg.RunRequest]] = []
        for sensor in (drift_retraining_sensor, campaign_retraining_sensor):
            context = dg.build_sensor_context(
                instance=self.instance,
                cursor=self.sensor_cursors.get(sensor.name),
                resources={"settings": self.settings},
            )
            result = sensor(context)
            if isinstance(result, dg.SensorResult):
                self.sensor_cursors[sensor.name] = result.cursor or self.sensor_cursors.get(sensor.name)
                requests += [
                    (sensor.name, request)
                    for request in result.run_requests or []
                    if not (request.run_key and self._launched(sensor.name, request.run_key))
                ]
        return requests

    def _launched(self, sensor: str, run_key: str) -> bool:
        import dagster as dg

        tags = {SENSOR_NAME_TAG: sensor, RUN_KEY_TAG: run_key}
        return bool(self.instance.get_run_ids(dg.RunsFilter(tags=tags), limit=1))

    def retrain(self, sensor: str, request: dg.RunRequest, size: RetrainingSize) -> RunOutcome:
        """The retraining job ``sensor`` asked for, tagged as the daemon would tag it."""
        ops = {
            "retraining_dataset": {"config": {"lookback_days": size.lookback_days}},
            "candidate_model": {
                "config": {
                    "calibration_frames": size.calibration_frames,
                    "reference_frames": size.reference_frames,
                    **({"batch_size": size.batch_size} if size.batch_size else {}),
                }
            },
            "candidate_evaluation": {
                "config": {"test_frames": size.test_frames, "parity_frames": size.parity_frames}
            },
        }
        tags = {**request.tags, SENSOR_NAME_TAG: sensor}
        if request.run_key:
            tags[RUN_KEY_TAG] = request.run_key
        return self._run("retraining", ops=merged(dict(request.run_config).get("ops", {}), ops), tags=tags)

    # --- events recorded from outside a run -----------------------------------------------------
    def attach_chart(self, asset: str, name: str, png: bytes, path: Path, description: str) -> None:
        """Show a demo chart on an asset's page (an observation with the image and its file)."""
        import dagster as dg

        from quality.charts import markdown_image

        self.instance.report_runless_asset_event(
            dg.AssetObservation(
                asset,
                description=description,
                metadata={
                    name: dg.MetadataValue.md(markdown_image(png, name)),
                    f"{name}_path": dg.MetadataValue.path(str(path)),
                },
            )
        )

    def run_error(self, run_id: str) -> str:
        """The first line of the first step failure of a run ('' when none)."""
        import dagster as dg

        records = self.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
        for record in records:
            event = record.event_log_entry.dagster_event
            data = event.step_failure_data if event else None
            if data is not None and data.error is not None:
                cause = data.error.cause or data.error
                return f"{event.step_key if event else ''}: {cause.message.strip().splitlines()[-1]}"
        return ""

    def check_passed(self, run_id: str, check_name: str) -> bool | None:
        """The outcome of one asset check in a run (None when it did not run)."""
        import dagster as dg

        records = self.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        for record in records:
            event = record.event_log_entry.dagster_event
            data = event.event_specific_data if event else None
            if isinstance(data, dg.AssetCheckEvaluation) and data.check_name == check_name:
                return data.passed
        return None

    def registered_candidate(self, run_id: str) -> str | None:
        """The version a retraining run's ``candidate_model`` registered (None: it registered none)."""
        import dagster as dg

        records = self.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        for record in records:
            materialization = record.asset_materialization
            if materialization is not None and materialization.asset_key == dg.AssetKey("candidate_model"):
                version = materialization.metadata.get("version")
                return str(version.value) if version is not None else None
        return None


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, nested dictionaries key by key (``over`` wins)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out
