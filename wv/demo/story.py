"""The demo from services to summary, one step after another (each shown by ``Story``).

Services → clean start → migrations and reference data → the shipped model approved → ingest
running → seven simulated days, each: the facilities' edges stream that day's video into the
broker, ingest stores it, the nightly Dagster jobs verify samples, evaluate drift, roll up
analytics and sync the ERP, and the drift sensor ticks. When it asks for retraining the job runs
at once (an overnight run); its candidate, if it passes the blocking check, is approved with
``wv model approve`` during the next swap day's traffic, and the edges hot-swap to it live.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg

from realtime.kafka import ensure_topics
from realtime.storage.bootstrap import bootstrap
from realtime.storage.model_registry import ModelRegistry
from simulator.config import SimConfig
from wv.demo.edges import EdgeRun, events_published, model_status, start_day, wait_for_ingest
from wv.demo.environment import REPO_ROOT, DemoEnvironment, Process
from wv.demo.orchestrate import DagsterSession, RetrainingSize
from wv.demo.progress import Story
from wv.demo.scenario import Scenario
from wv.demo.summary import WeekSummary, summarize, week_charts
from wv.settings import PlatformSettings

DEFAULT_MODEL = REPO_ROOT / "models" / "default"
FALLBACK_MODEL = REPO_ROOT / "models" / "fallback"
EDGE_TIMEOUT_S = 900.0
SWAP_TIMEOUT_S = 120.0


@dataclass
class Outcome:
    """What happened, for the summary: the loop's milestones and the runs behind them."""

    runs: dict[str, int] = field(default_factory=lambda: {"succeeded": 0, "failed": 0})
    drift_alarm: str = ""
    campaign_ended: str = ""
    """``FAC@first drifted day: complete|expired`` when a labeling campaign's end launched retraining."""
    retraining_run: str = ""
    candidate: str = ""
    candidate_passed: bool | None = None
    gate_reasons: str = ""
    hard_examples: dict[str, Any] = field(default_factory=dict)
    canary: dict[str, Any] = field(default_factory=dict)
    """The canary's facilities, the comparison's verdict and reasons, and what followed."""
    approved_at: float | None = None
    later_retrainings: list[dict[str, Any]] = field(default_factory=list)
    """Retraining runs launched after the candidate was approved (reported, not judged)."""
    swap_verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def count(self, success: bool) -> None:
        self.runs["succeeded" if success else "failed"] += 1


def seed_reference_data(env: DemoEnvironment, scenario: Scenario) -> None:
    """Expected throughput per facility and zone (what analytics compares with) and the cameras."""
    zones = SimConfig().zones
    expected = round(scenario.arrival_rate * scenario.seconds * len(scenario.cameras("")))
    with psycopg.connect(env.database_url) as conn:
        for facility in scenario.facilities:
            conn.execute(
                "UPDATE facilities SET expected_daily_packages = %s WHERE facility_id = %s",
                (expected, facility),
            )
            for zone in zones:
                conn.execute(
                    "INSERT INTO zones (facility_id, zone_id, kind, expected_daily_packages) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (facility, zone, "holding" if zone == "holding" else "lane", expected // len(zones)),
                )
            for camera in scenario.cameras(facility):
                conn.execute(
                    "INSERT INTO cameras (facility_id, camera_id, description) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (facility, camera, "synthetic conveyor camera (demo)"),
                )


def register_sessions(env: DemoEnvironment, scenario: Scenario, day: date) -> None:
    """Add the day's stream of every camera to its session list (what crops and retraining re-render)."""
    with psycopg.connect(env.database_url) as conn:
        for facility, bursts in scenario.day_plan(day).items():
            for burst in bursts:
                conn.execute(
                    "UPDATE cameras SET source_uri = trim(concat_ws(' ', source_uri, %s::text)) "
                    "WHERE facility_id = %s AND camera_id = %s",
                    (burst.uri, facility, burst.camera),
                )


def day_accuracy(env: DemoEnvironment, day: date) -> dict[str, float | None]:
    with psycopg.connect(env.database_url) as conn:
        rows = conn.execute(
            "SELECT facility_id, accuracy FROM drift_evaluations WHERE eval_date = %s ORDER BY 1", (day,)
        ).fetchall()
    return dict(rows)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _gate_figures(evaluation: dict[str, Any]) -> str:
    """Condition accuracy, candidate vs production, on the recent (drifted) and frozen sets."""
    reports = evaluation.get("reports", {})
    sets = []
    for name in ("recent", "frozen"):
        pair = [
            reports.get(side, {}).get(name, {}).get("condition_accuracy")
            for side in ("candidate", "production")
        ]
        if None not in pair:
            sets.append(f"{name} {_pct(pair[0])} vs {_pct(pair[1])}")
    return f"condition accuracy {', '.join(sets)}" if sets else "no figures recorded"


class DemoRun:
    def __init__(self, env: DemoEnvironment, scenario: Scenario, story: Story, size: RetrainingSize) -> None:
        self.env = env
        self.scenario = scenario
        self.story = story
        self.size = size
        self.outcome = Outcome()
        self.ingest: Process | None = None
        self.session: DagsterSession | None = None
        self.settings: PlatformSettings | None = None

    # --- set-up ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        env, story, scenario = self.env, self.story, self.scenario
        with story.step("Services: PostgreSQL, Redis, Kafka-protocol broker (wv services up)") as step:
            lines = env.wv("services", "up").stdout.strip().splitlines()
            step.update("; ".join(" ".join(line.split()[:2]) for line in lines))
        with story.step("Clean start: demo UI stopped, demo databases and folders recreated") as step:
            env.wv("ui", "stop")
            env.reset_databases()
            env.reset_folders()
            step.update(f"database {env.database_name}, folder {env.root}")
        settings = self.settings = env.apply()
        with story.step("Migrations, partitions, facilities, zones, cameras") as step:
            report = bootstrap(
                env.database_url,
                facilities=scenario.facilities,
                retention_days=settings.retention_days,
                days_ahead=settings.partition_days_ahead,
                timezone=settings.facility_timezone,
            )
            seed_reference_data(env, scenario)
            step.update(f"{len(report.migrations)} migrations, {len(scenario.facilities)} facilities")
        with story.step("Shipped model `default` in the demo's store, registered and approved") as step:
            model = env.models_dir / "default"
            shutil.copytree(DEFAULT_MODEL, model)
            if not (model / "model.int8.onnx").exists():  # a fresh clone ships the weights only
                step.update("exporting ONNX and INT8 ONNX (wv model export)")
                env.wv("model", "export", str(model), "--parity-frames", "64", timeout=1800)
            env.wv("model", "register", "default", str(model), "--notes", "shipped default model")
            env.wv("model", "approve", "default", "--by", "demo", "--reason", "initial production model")
            step.update(f"pointer {env.models_dir / 'production.json'}")
        with story.step("Shipped straggler fallback `models/fallback` in the demo's store") as step:
            fallback = env.models_dir / "fallback"
            shutil.copytree(FALLBACK_MODEL, fallback)
            if not (fallback / "model.onnx").exists():
                step.update("exporting ONNX (wv model export)")
                env.wv("model", "export", str(fallback), "--parity-frames", "16", "--no-record", timeout=1800)
            step.update(f"{fallback} answers batches the primary misses its deadline on")
        with story.step("Ingest worker (wv realtime run) consuming the demo's topics") as step:
            topics = [
                settings.topic("detections"),
                settings.topic("anomalies"),
                settings.topic("dead-letter"),
            ]
            ensure_topics(settings.kafka_bootstrap, topics, partitions=3)
            self.ingest = env.start("ingest", "realtime", "run", "--workers", "1", "--partitions", "3")
            step.update(f"topics {env.topic_prefix}*, log {self.ingest.log_path}")
        with story.step("Dagster code location and PostgreSQL-backed instance loaded"):
            self.session = DagsterSession(env)

    def close(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
        if self.session is not None:
            self.session.close()

    # --- one simulated day ----------------------------------------------------------------------
    def day(self, day: date) -> None:
        scenario, story = self.scenario, self.story
        n = scenario.day_number(day)
        label = f"Day {n} {day:%a %d %b}"
        drifted = [f for f in scenario.facilities if scenario.is_drifted(f, day)]
        what = f"{len(scenario.facilities)} facilities × {len(scenario.cameras(''))} cameras × {scenario.frames} frames"
        if drifted:
            what += f", {', '.join(drifted)} drifted ({scenario.drift})"
        with story.step(f"{label}: edges stream ({what})") as step:
            runs = start_day(self.env, day, scenario.day_plan(day))
            try:
                if n == scenario.swap_day and self.outcome.candidate_passed:
                    self.approve_and_swap(runs, step)
                stats = {r.facility: r.finish(EDGE_TIMEOUT_S) for r in runs}
            finally:
                for run in runs:
                    run.process.stop(grace_s=5)
            expected = {f: events_published(s) for f, s in stats.items()}
            step.update(f"{sum(expected.values())} events published; waiting for ingest")
            stored = wait_for_ingest(self.env, day, expected)
            missing = {f: expected[f] - stored[f] for f in expected if stored[f] < expected[f]}
            if missing:
                self.outcome.problems.append(f"{label}: events not stored after waiting: {missing}")
            decisions = sum(int(s.get("events_decision", 0)) for s in stats.values())
            step.update(f"{decisions} package decisions, {sum(stored.values())} events stored")
        register_sessions(self.env, scenario, day)
        self.nightly(day, label)

    def approve_and_swap(self, runs: list[EdgeRun], step: Any) -> None:
        """Approve the candidate as a canary on the drifted facility while the edges stream, then wait
        for its edge's verdict (``judge_canary`` decides the rest that night)."""
        started = time.time()
        step.update("waiting for the edges to start")
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        while time.monotonic() < deadline and not all(
            (model_status(self.env, r.facility) or {}).get("active")
            and self._status_after(r.facility, started)
            for r in runs
        ):
            time.sleep(0.5)
        version = self.outcome.candidate
        drifted = [r.facility for r in runs if self.scenario.is_drifted(r.facility, self.scenario.dates[-1])]
        canary = drifted[:1] or [runs[0].facility]
        self.env.wv(
            "model", "approve", version, "--by", "demo", "--canary", ",".join(canary),
            "--reason", "drift retraining passed its check: the drifted facility first",
        )  # fmt: skip
        self.outcome.canary = {"facilities": canary}
        runs = [r for r in runs if r.facility in canary]  # only the canary's edges swap today
        self.outcome.approved_at = time.time()
        self.story.note(
            f"Canary: {version} on {', '.join(canary)} first",
            f"wv model approve {version} --by demo --canary {','.join(canary)}",
        )
        step.update(f"edges hot-swapping to {version}")
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        pending = {r.facility for r in runs}
        while pending and time.monotonic() < deadline and any(r.process.running() for r in runs):
            for facility in sorted(pending):
                verdict = self._verdict(facility, version)
                if verdict is not None:
                    self.outcome.swap_verdicts[facility] = verdict
                    pending.discard(facility)
                    detail = ", ".join(
                        f"{k} {verdict[k]:.2f}" for k in ("agreement", "latency_ratio") if k in verdict
                    )
                    self.story.note(
                        f"{facility} edge: {version} {verdict['result']}", detail or verdict["reason"]
                    )
            time.sleep(0.3)
        for facility in sorted(pending):
            self.outcome.problems.append(
                f"{facility}: no hot-swap verdict for {version} before its burst ended"
            )

    def _status_after(self, facility: str, started: float) -> bool:
        path = self.env.root / "edge" / facility / "model_status.json"
        return path.exists() and path.stat().st_mtime >= started

    def _verdict(self, facility: str, version: str) -> dict[str, Any] | None:
        status = model_status(self.env, facility) or {}
        after = self.outcome.approved_at or 0.0
        for verdict in reversed(status.get("verdicts", [])):
            if verdict.get("version") == version and verdict.get("at", 0) >= after - 1:
                return dict(verdict)
        return None

    def nightly(self, day: date, label: str) -> None:
        assert self.session is not None
        session, story, facilities = self.session, self.story, self.scenario.facilities
        with story.step(f"{label}: nightly model quality (verified samples → drift evaluation)") as step:
            for facility in facilities:
                step.update(facility)
                self.outcome.count(session.nightly_quality(day, facility).success)
            accuracy = day_accuracy(self.env, day)
            step.update(", ".join(f"{f} {_pct(accuracy.get(f))}" for f in facilities))
        with story.step(f"{label}: facility analytics → ERP sync") as step:
            for facility in facilities:
                step.update(facility)
                self.outcome.count(session.nightly_analytics(day, facility).success)
            step.update(f"ERP files in {self.env.erp_dir}")
        self.judge_canary(label)
        for sensor, request in session.retraining_requests():
            self.retrain(sensor, request, day)

    # --- the loop closing -----------------------------------------------------------------------
    def retrain(self, sensor: str, request: Any, day: date) -> None:
        assert self.session is not None
        tags = request.tags
        if tags.get("wv/trigger") == "campaign":
            self.outcome.campaign_ended = f"{tags.get('wv/drift_since', '?')}: {tags.get('wv/campaign', '?')}"
            self.story.note(
                f"Labeling campaign {self.outcome.campaign_ended} ({tags.get('wv/labels', '?')} labels), "
                "retraining launched on every label since the drop",
                f"run key {request.run_key}",
            )
        else:
            alarm = f"{tags.get('wv/facilities', '?')} at {float(tags.get('wv/lowest_accuracy', 'nan')):.1%}"
            self.outcome.drift_alarm = self.outcome.drift_alarm or alarm  # the week's first alarm
            self.story.note(
                f"Drift sensor: {alarm} < {self.env.base.drift_accuracy_threshold:.0%}, retraining launched",
                f"run key {request.run_key}",
            )
            self.label_hard_examples(day)
        # After the swap (a new alarm, e.g. a wrong answer or two in a demo day's small sample) the
        # retraining runs as the platform would, but the week's verdict stays on the swapped candidate.
        later = self.outcome.approved_at is not None
        title = (
            "Retraining run after the swap (a new alarm; the verdict stays on the first)"
            if later
            else "Retraining run: dataset → fine-tuned candidate → blocking evaluation"
        )
        with self.story.step(title) as step:
            run = self.session.retrain(sensor, request, self.size)  # a rejected candidate fails this run
            passed = self.session.check_passed(run.run_id, "candidate_beats_production")
            if later:
                trigger = tags.get("wv/trigger", "drift")
                self.outcome.later_retrainings.append(
                    {"run": run.run_id, "trigger": trigger, "check_passed": passed}
                )
                step.update(f"run {run.run_id}: check {'passed' if passed else 'failed'}")
                return
            self.outcome.retraining_run = run.run_id
            registry = ModelRegistry(self.env.database_url, self.env.models_dir)
            version = self.session.registered_candidate(run.run_id)  # this run's, not an earlier one's
            candidate = registry.get(version) if version else None
            self.outcome.candidate = candidate.version if candidate else ""
            self.outcome.candidate_passed = (
                bool(passed) and candidate is not None and candidate.status == "candidate"
            )
            if candidate is None:
                error = self.session.run_error(run.run_id) or "no error recorded"
                step.fail(f"no candidate: run {run.run_id} failed ({error})")
                self.outcome.problems.append(f"retraining run {run.run_id} failed: {error}")
            else:
                evaluation = candidate.metrics.get("evaluation", {})
                self.outcome.gate_reasons = "; ".join(evaluation.get("reasons", [])[:3])
                step.update(
                    f"{candidate.version}: check {'passed' if passed else 'failed'} "
                    f"({self.outcome.gate_reasons or _gate_figures(evaluation)})"
                )

    def judge_canary(self, label: str) -> None:
        """While a canary runs: canary_comparison, then what it says (a rollback has happened by
        itself; a recommended promotion is approved fleet-wide by the demo's person)."""
        assert self.session is not None
        registry = ModelRegistry(self.env.database_url, self.env.models_dir)
        canary = registry.canary()
        if canary is None:
            return
        with self.story.step(f"{label}: canary_comparison ({canary.version} vs production)") as step:
            run = self.session.canary_comparison()
            self.outcome.count(run.success)
            decision = registry.get(canary.version).metrics.get("canary_decision", {})
            verdict = decision.get("verdict", "no decision")
            self.outcome.canary.update(verdict=verdict, reasons=decision.get("reasons", []))
            if not run.success:
                error = self.session.run_error(run.run_id) or "no error recorded"
                self.outcome.problems.append(f"canary_comparison run {run.run_id} failed: {error}")
                step.fail(error)
                return
            if verdict == "promote_recommended":
                self.env.wv("model", "approve", canary.version, "--by", "demo", "--reason", "canary held up")
                self.outcome.canary["fleet_wide"] = True
            step.update(f"{verdict}: {'; '.join(decision.get('reasons', []))}")

    def label_hard_examples(self, day: date) -> None:
        """The week of the day drift was caught: its unsure decisions through labeling, before
        retraining uses the labels."""
        assert self.session is not None
        server = "Label Studio" if self.session.settings.label_studio_url else "task files (no Label Studio)"
        with self.story.step(f"Hard examples of the drifted week → {server} → labels back") as step:
            monday = day - timedelta(days=day.weekday())
            run = self.session.hard_examples(monday)
            self.outcome.count(run.success)
            with psycopg.connect(self.env.database_url) as conn:
                examples, labeled, corrected = conn.execute(
                    "SELECT count(*), count(verified_condition), "
                    "count(*) FILTER (WHERE verified_condition <> predicted_condition) FROM hard_examples "
                    "WHERE export_id = %s",
                    (f"hard-{monday.isoformat()}",),
                ).fetchone() or (0, 0, 0)
            self.outcome.hard_examples = {
                "week": monday.isoformat(), "server": server, "examples": examples, "labeled": labeled,
                "model_corrected": corrected, "run": run.run_id,
            }  # fmt: skip
            if not run.success:
                error = self.session.run_error(run.run_id) or "no error recorded"
                self.outcome.problems.append(f"hard examples run {run.run_id} failed: {error}")
                step.fail(error)
                return
            step.update(
                f"week of {monday}: {examples} exported, {labeled} labeled, {corrected} corrected the model"
            )

    # --- the week in figures ------------------------------------------------------------------
    def report(self) -> WeekSummary:
        """Summary from the database, charts on disk and on the assets' pages, summary files."""
        assert self.session is not None
        env, scenario = self.env, self.scenario
        with self.story.step("Summary and charts") as step:
            with psycopg.connect(env.database_url) as conn:
                summary = summarize(conn, scenario)
            assert self.settings is not None
            threshold = self.settings.drift_accuracy_threshold
            swapped = self.outcome.approved_at is not None
            for chart in week_charts(summary, scenario, swapped, threshold):
                path = env.reports / f"{chart.name}.png"
                path.write_bytes(chart.png)
                self.session.attach_chart(chart.asset, chart.name, chart.png, path, chart.description)
            (env.reports / "summary.json").write_text(
                json.dumps({"outcome": asdict(self.outcome), **summary.as_json()}, indent=1, default=str)
            )
            step.update(f"PNGs and summary.json in {env.reports}")
        return summary

    def run(self) -> tuple[Outcome, WeekSummary]:
        try:
            self.prepare()
            for day in self.scenario.dates:
                self.day(day)
            summary = self.report()
        finally:
            self.close()
        return self.outcome, summary
