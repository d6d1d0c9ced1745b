"""ModelManager: which model answers now, which one is being tried, and how to go back.

Start-up loads a pinned version, else the pointer's version, else the pointer's previous one,
else the shipped default. A background thread then polls the pointer. A new version is loaded
off the inference path and shadow-runs on sampled batches (same input as the active model); after
`shadow_frames` frames it is promoted only if its detections agree with the active model's
(`min_agreement`) and its p95 inference time stays within `max_latency_ratio` of the active one's.
Otherwise the active model stays and the verdict says why. An edge whose facility (or every camera)
a canary names (``canary.json`` next to the pointer, ``contract.canary_pointer``) follows the canary
instead, through the same shadow run; when the canary ends it goes back to the pointer's version. Promotion swaps one reference between
two batches, so no frame is lost or processed twice. `max_failures` consecutive inference
failures of the active model roll back to the previous one; the failed version is not loaded
again until the pointer names a different version. Every verdict is kept in `status()` and
written to `status_path` (JSON) for operators.

An engine that runs a plan built for one GPU (TensorRT, ``edge.backends.plan_store``) gets it
before the version is loaded: the model store's plan of its key (model content, precision, GPU
model, library version), else one built here by the engine's builder plugin, off the inference
path, while the active model keeps answering (``engine_build`` in the status says
``building_engine``). A plan that cannot be had rejects the version with the reason; the active
model stays, so a retrained version never ends ``load_failed`` for want of a plan.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import Metric

from contract.canary_pointer import Canary, canary_file, read_canary
from contract.frames import Detection
from contract.model_pointer import PointerError, read_pointer
from edge.backends.base import Engine, EngineError, EngineSpec, ModelFiles, load_engine
from edge.backends.plan_store import EngineBuildError, PlanBuilder, builder_for, ensure_plan
from edge.config import HotswapConfig, ModelSpec
from edge.decisions.events import ModelInfo
from edge.hotswap.agreement import agreement
from edge.metrics import counter, gauge
from edge.model.preprocess import preprocess

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    files: ModelFiles
    engine: Engine

    @property
    def version(self) -> str:
        return self.files.version

    def info(self, fallback: bool = False) -> ModelInfo:
        return ModelInfo(self.version, self.engine.name, self.engine.precision, fallback)


@dataclass
class Verdict:
    version: str
    result: str
    """promoted | rejected | rolled_back | load_failed"""
    reason: str
    at: float = field(default_factory=time.time)
    agreement: float | None = None
    latency_ratio: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ShadowSample:
    images: list[np.ndarray]
    """The batch's frames, preprocessed again for the candidate (its input size may differ)."""
    frame_sizes: list[tuple[int, int]]
    detections: list[list[Detection]]
    active_ms: float
    active_version: str


class NoModelError(RuntimeError):
    """No model version could be loaded at start-up; the message lists every attempt."""


Decoder = Callable[[dict[str, np.ndarray], list[tuple[int, int]], ModelFiles], list[list[Detection]]]


class ModelManager:
    def __init__(
        self,
        spec: EngineSpec,
        model: ModelSpec,
        hotswap: HotswapConfig,
        decode: Decoder,
        status_path: Path | None = None,
        loader: Callable[[Path, EngineSpec, str], LoadedModel] | None = None,
        scope: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        """``scope``: this edge's facility and camera ids, which decide whether a canary applies to it
        (None: it never follows a canary)."""
        self.spec = spec
        self.model_spec = model
        self.cfg = hotswap
        self.decode = decode
        self.status_path = status_path
        self._load = loader or _load_model
        self._lock = threading.RLock()
        self.active: LoadedModel | None = None
        self.previous: LoadedModel | None = None
        self.fallback: LoadedModel | None = None
        self.candidate: LoadedModel | None = None
        self.verdicts: list[Verdict] = []
        self.swaps = 0
        self.rollbacks = 0
        self._failures = 0
        self._blocked: set[tuple[str, str]] = set()
        self._shadow: queue.Queue[ShadowSample] = queue.Queue(maxsize=1)
        self._shadow_scores: list[float] = []
        self._shadow_ms: list[tuple[float, float]] = []
        self._offers = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scope = scope
        self._pointers_seen: tuple[float | None, float | None] | None = None
        self.plans: Counter[str] = Counter()
        """Plans taken before a load, by outcome: built, reused, failed."""
        self.engine_build: dict[str, Any] | None = None
        """The last plan step: version, state (building_engine | built | reused | failed), seconds, reason."""
        self.last_build_s: float | None = None

    # -- start-up ---------------------------------------------------------------------------

    def start(self) -> LoadedModel:
        """Load the initial and fallback models and start following the pointer."""
        self._blocked = self._read_blocked()
        attempts: list[str] = []
        for version, path in self._initial_choices():
            if (version, str(path)) in self._blocked:
                attempts.append(f"{version}: skipped, failed before")
                continue
            try:
                self.active = self._open(path, self.spec, version)
                break
            except Exception as exc:
                attempts.append(f"{version} ({path}): {exc}")
                self._record(Verdict(version, "load_failed", str(exc)))
                self._blocked.add((version, str(path)))
        if self.active is None:
            raise NoModelError("no model could be loaded:\n  " + "\n  ".join(attempts or ["no candidates"]))
        if attempts:
            log.error("started on %s after: %s", self.active.version, "; ".join(attempts))
        self._load_fallback()
        self._write_status()
        if self.cfg.enabled and self.model_spec.version is None:
            self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
            self._thread.start()
        return self.active

    def _initial_choices(self) -> list[tuple[str, Path]]:
        spec = self.model_spec
        if spec.version is not None:
            p = Path(spec.version)
            path = p if p.is_absolute() or p.exists() else spec.models_dir / spec.version
            return [(path.name, path)]
        choices: list[tuple[str, Path]] = []
        try:
            pointer = read_pointer(spec.pointer_path)
        except PointerError as exc:
            log.error("%s; ignoring it", exc)
            pointer = None
        if (canary := self._canary()) is not None:
            choices.append((canary.version, canary.path))
        if pointer is not None:
            choices.append((pointer.version, pointer.path))
            if pointer.previous and pointer.previous_path is not None:
                choices.append((pointer.previous, pointer.previous_path))
        choices.append((spec.default.name, spec.default))
        return choices

    def _load_fallback(self) -> None:
        path = self.model_spec.fallback
        if path is None or not path.exists():
            log.warning("no fallback model at %s: stragglers will wait for the primary", path)
            return
        try:
            spec = EngineSpec("onnxruntime", self.model_spec.fallback_precision, "cpu", self.spec.threads)
            self.fallback = self._load(path, spec, f"{path.name}")
        except Exception as exc:
            log.error("fallback model %s unavailable (%s): stragglers will wait for the primary", path, exc)

    def _open(self, path: Path, spec: EngineSpec, version: str) -> LoadedModel:
        """Load a version; for an engine that runs a plan, take or build the plan first."""
        builder = _builder(spec.name)
        if builder is not None:
            self._prepare_plan(ModelFiles.read(path, version), spec, builder)
        return self._load(path, spec, version)

    def _prepare_plan(self, files: ModelFiles, spec: EngineSpec, builder: PlanBuilder) -> None:
        def building(dest: Path) -> None:
            self.engine_build = {"version": files.version, "state": "building_engine", "plan": str(dest)}
            self._write_status()
            log.info("building the %s plan of %s: %s", builder.engine, files.version, dest.name)

        try:
            plan = ensure_plan(files, spec.precision, spec.device, spec.max_graph_batch, builder, building)
        except EngineBuildError as exc:
            self.plans["failed"] += 1
            self.engine_build = {"version": files.version, "state": "failed", "reason": str(exc)}
            raise
        self.plans["built" if plan.built else "reused"] += 1
        if plan.built:
            self.last_build_s = plan.seconds
        self.engine_build = {
            "version": files.version,
            "state": "built" if plan.built else "reused",
            "plan": str(plan.path),
            "seconds": round(plan.seconds, 3),
        }
        self._write_status()

    # -- called by the inference loop -------------------------------------------------------

    def record_success(self) -> None:
        self._failures = 0

    def record_failure(self, model: LoadedModel, exc: BaseException) -> bool:
        """Count a failed inference of `model`; True when it triggered a rollback."""
        with self._lock:
            if model is not self.active:
                return False
            self._failures += 1
            log.warning("inference failed on %s (%d in a row): %s", model.version, self._failures, exc)
            if self._failures < self.cfg.max_failures:
                return False
            return self._rollback(f"{self._failures} consecutive inference failures, last: {exc}")

    def offer_shadow(self, sample: ShadowSample) -> None:
        """Hand a batch to the candidate (every `shadow_every`-th offer; never blocks)."""
        if self.candidate is None:
            return
        self._offers += 1
        if self._offers % self.cfg.shadow_every:
            return
        with contextlib.suppress(queue.Full):
            self._shadow.put_nowait(sample)

    # -- transitions ------------------------------------------------------------------------

    def _rollback(self, reason: str) -> bool:
        bad = self.active
        assert bad is not None
        target = self.previous
        if target is None:
            for version, path in self._rollback_choices(bad.version):
                try:
                    target = self._open(path, self.spec, version)
                    break
                except Exception as exc:
                    log.error("rollback candidate %s failed to load: %s", version, exc)
        if target is None:
            log.error("cannot roll back from %s: no previous model loads; staying on it", bad.version)
            self._failures = 0
            return False
        self.active, self.previous = target, None
        self._blocked.add((bad.version, str(bad.files.path)))
        self._failures = 0
        self.rollbacks += 1
        self._record(Verdict(bad.version, "rolled_back", f"{reason}; now on {target.version}"))
        log.error("rolled back from %s to %s: %s", bad.version, target.version, reason)
        _close_later(bad)
        return True

    def _rollback_choices(self, bad: str) -> list[tuple[str, Path]]:
        return [(v, p) for v, p in self._initial_choices() if v != bad]

    def _promote(self, candidate: LoadedModel, agreement_: float, ratio: float) -> None:
        with self._lock:
            old_previous, self.previous, self.active = self.previous, self.active, candidate
            self.candidate = None
            self._failures = 0
            self.swaps += 1
        self._record(
            Verdict(
                candidate.version,
                "promoted",
                "shadow run within bounds",
                agreement=agreement_,
                latency_ratio=ratio,
            )
        )
        log.info("promoted %s (agreement %.3f, latency ratio %.2f)", candidate.version, agreement_, ratio)
        if old_previous is not None:
            _close_later(old_previous)

    def _reject(
        self, candidate: LoadedModel, reason: str, agreement_: float | None, ratio: float | None
    ) -> None:
        with self._lock:
            self.candidate = None
            self._blocked.add((candidate.version, str(candidate.files.path)))
        self._record(
            Verdict(candidate.version, "rejected", reason, agreement=agreement_, latency_ratio=ratio)
        )
        log.warning(
            "kept %s, rejected %s: %s", self.active.version if self.active else "?", candidate.version, reason
        )
        _close_later(candidate)

    # -- background thread ------------------------------------------------------------------

    def _run(self) -> None:
        last_poll = 0.0
        while not self._stop.is_set():
            try:
                sample = self._shadow.get(timeout=min(self.cfg.poll_s, 0.5))
            except queue.Empty:
                sample = None
            if sample is not None and self.candidate is not None:
                self._shadow_run(self.candidate, sample)
            if time.monotonic() - last_poll >= self.cfg.poll_s:
                last_poll = time.monotonic()
                try:
                    self.poll()
                except Exception:  # never let a bad pointer or model kill the manager thread
                    log.exception("model pointer poll failed")

    def _canary(self) -> Canary | None:
        """The canary this edge runs, if one covers its facility or cameras."""
        if self.scope is None:
            return None
        try:
            canary = read_canary(canary_file(self.model_spec.pointer_path.parent))
        except PointerError as exc:
            log.error("%s; following the production pointer", exc)
            return None
        return canary if canary is not None and canary.covers(*self.scope) else None

    def poll(self) -> None:
        """Check the pointer (and canary) and start shadowing a new version if they name one here."""
        seen = (
            _mtime(self.model_spec.pointer_path),
            _mtime(canary_file(self.model_spec.pointer_path.parent)),
        )
        if seen == self._pointers_seen or seen[0] is None:
            return
        self._pointers_seen = seen
        try:
            pointer = read_pointer(self.model_spec.pointer_path)
        except PointerError as exc:
            log.error("%s; keeping %s", exc, self.active.version if self.active else "?")
            return
        if pointer is None or self.active is None:
            return
        canary = self._canary()
        if canary is not None:
            pointer = replace(pointer, version=canary.version, path=canary.path)
        key = (pointer.version, str(pointer.path))
        current = {(m.version, str(m.files.path)) for m in (self.active, self.candidate) if m is not None}
        if key in current or key in self._blocked:
            return
        if self.previous is not None and key == (self.previous.version, str(self.previous.files.path)):
            # The registry rolled back to the model we still hold: switch at once, it ran here before.
            with self._lock:
                self.active, self.previous = self.previous, self.active
                self.swaps += 1
            self._record(Verdict(pointer.version, "promoted", "registry rolled back to the previous version"))
            return
        log.info("pointer names %s: loading it for a shadow run", pointer.version)
        try:
            candidate = self._open(pointer.path, self.spec, pointer.version)
        except EngineBuildError as exc:
            self._blocked.add(key)
            self._record(Verdict(pointer.version, "rejected", f"kept {self.active.version}: {exc}"))
            log.error(
                "new model %s has no engine plan here, kept %s: %s", pointer.version, self.active.version, exc
            )
            return
        except Exception as exc:
            self._blocked.add(key)
            self._record(Verdict(pointer.version, "load_failed", f"kept {self.active.version}: {exc}"))
            log.error("new model %s cannot be loaded, kept %s: %s", pointer.version, self.active.version, exc)
            return
        with self._lock:
            if self.candidate is not None:
                _close_later(self.candidate)
            self.candidate = candidate
            self._shadow_scores, self._shadow_ms = [], []

    def _shadow_run(self, candidate: LoadedModel, sample: ShadowSample) -> None:
        batch = preprocess(sample.images, candidate.files.input_size)
        started = time.perf_counter()
        try:
            raw = candidate.engine.infer(batch)
        except Exception as exc:
            self._reject(candidate, f"inference failed in the shadow run: {exc}", None, None)
            return
        ms = (time.perf_counter() - started) * 1000
        dets = self.decode(raw, sample.frame_sizes, candidate.files)
        self._shadow_scores.extend(agreement(a, b) for a, b in zip(sample.detections, dets, strict=True))
        self._shadow_ms.append((ms, sample.active_ms))
        if len(self._shadow_scores) < self.cfg.shadow_frames:
            return
        score = float(np.mean(self._shadow_scores))
        cand_p95 = float(np.percentile([c for c, _ in self._shadow_ms], 95))
        act_p95 = float(np.percentile([a for _, a in self._shadow_ms], 95))
        ratio = cand_p95 / max(act_p95, 1e-6)
        if score < self.cfg.min_agreement:
            self._reject(candidate, f"agreement {score:.3f} < {self.cfg.min_agreement}", score, ratio)
        elif ratio > self.cfg.max_latency_ratio:
            self._reject(
                candidate,
                f"p95 inference {cand_p95:.1f} ms is {ratio:.2f}x the active model's "
                f"(max {self.cfg.max_latency_ratio})",
                score,
                ratio,
            )
        else:
            self._promote(candidate, score, ratio)

    # -- status -----------------------------------------------------------------------------

    def _record(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self._write_status()

    def status(self) -> dict[str, Any]:
        return {
            "active": self.active.version if self.active else None,
            "active_path": str(self.active.files.path) if self.active else None,
            "previous": self.previous.version if self.previous else None,
            "candidate": self.candidate.version if self.candidate else None,
            "fallback": self.fallback.version if self.fallback else None,
            "swaps": self.swaps,
            "rollbacks": self.rollbacks,
            "blocked": sorted(f"{v}@{p}" for v, p in self._blocked),
            "engine_build": self.engine_build,
            "verdicts": [v.as_dict() for v in self.verdicts[-20:]],
        }

    def collect(self) -> Iterable[Metric]:
        """Prometheus families of the plan step (registered by the service next to its own)."""
        build = self.engine_build or {}
        yield counter(
            "wv_edge_engine_plans",
            "Engine plans taken before a model load, by outcome (built, reused, failed).",
            ["outcome"],
            {(k,): v for k, v in self.plans.items()},
        )
        yield gauge(
            "wv_edge_engine_building",
            "1 while a plan is being built.",
            float(build.get("state") == "building_engine"),
        )
        yield gauge(
            "wv_edge_engine_build_seconds",
            "Duration of the last plan built here.",
            self.last_build_s,
        )

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2) + "\n")
        os.replace(tmp, self.status_path)

    def _read_blocked(self) -> set[tuple[str, str]]:
        """Versions that failed on this box before (from the status file), so a restart skips them."""
        if self.status_path is None or not self.status_path.exists():
            return set()
        try:
            entries = json.loads(self.status_path.read_text()).get("blocked", [])
        except (OSError, ValueError):
            return set()
        return {tuple(e.split("@", 1)) for e in entries if "@" in e}  # type: ignore[misc]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for m in (self.active, self.previous, self.candidate, self.fallback):
            if m is not None:
                m.engine.close()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _builder(engine: str) -> PlanBuilder | None:
    try:
        return builder_for(engine)
    except EngineError:
        return None  # an unknown engine: loading the version says so


def _load_model(path: Path, spec: EngineSpec, version: str) -> LoadedModel:
    files = ModelFiles.read(path, version)
    return LoadedModel(files, load_engine(files, spec))


def _close_later(model: LoadedModel) -> None:
    """Close an engine that may still be finishing a straggling batch on the inference worker."""
    timer = threading.Timer(30.0, model.engine.close)
    timer.daemon = True
    timer.start()
