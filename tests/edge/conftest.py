"""Fixtures for the edge runtime tests: a trained model version, configs, Kafka event collection,
a private broker that can be frozen, stopped and restarted, and two test engines.

The engines are real `Engine` plugins registered the way any engine is: `test-slow` is ONNX
Runtime that sleeps on selected calls (stragglers), `test-faulty` is ONNX Runtime that raises
while a `FAULT` file exists in its model version directory (a model that starts failing).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.proto import warehouse_vision_pb2 as pb
from edge.backends.base import EngineError, EngineSpec, ModelFiles, register
from edge.backends.onnxruntime import OnnxRuntimeEngine
from edge.config import EdgeConfig, build_config
from wv.services.base import free_port
from wv.services.kafka import tansu_binary
from wv.settings import PlatformSettings

ROOT = Path(__file__).resolve().parents[2]


@register
class SlowEngine(OnnxRuntimeEngine):
    """Sleeps `delay_s` on every `every`-th inference after warm-up (class attributes set by tests)."""

    name = "test-slow"
    delay_s = 0.3
    every = 3

    def __init__(self, model: ModelFiles, spec: EngineSpec) -> None:
        super().__init__(model, spec)
        self.calls = 0

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls > 1 and self.calls % self.every == 0:
            time.sleep(self.delay_s)
        return super().infer(batch)


@register
class FaultyEngine(OnnxRuntimeEngine):
    name = "test-faulty"

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if (self.model.path / "FAULT").exists():
            raise EngineError(f"injected fault in {self.model.version}")
        return super().infer(batch)


@pytest.fixture(scope="session")
def edge_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped default model (ONNX exported and quantized when the checkout has only weights)."""
    source = Path(os.environ.get("WV_TEST_EDGE_MODEL", ROOT / "models" / "default"))
    target = tmp_path_factory.mktemp("models") / "v1"
    shipped_copy(source, target)
    if not (target / "model.int8.onnx").is_file():
        export_onnx_models(target)
    return target


@pytest.fixture(scope="session")
def fallback_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped straggler fallback `models/fallback` (version "fallback"), with the
    FP32 ONNX file the edge loads it from (`model.fallback_precision`)."""
    target = tmp_path_factory.mktemp("models") / "fallback"
    shipped_copy(ROOT / "models" / "fallback", target)
    if not (target / "model.onnx").is_file():
        export_onnx_models(target, int8=False)
    return target


def shipped_copy(source: Path, target: Path) -> None:
    if not (source / "config.json").is_file():
        pytest.skip(f"no trained model at {source}: `wv model train ... --save-version {source}`")
    shutil.copytree(source, target)


def export_onnx_models(version: Path, int8: bool = True) -> None:
    """What `wv model export` does, minus the parity report (ONNX files are not committed)."""
    from edge.model.version import load_detector, read_version
    from model_lifecycle.export import export_onnx
    from model_lifecycle.quantize import FrameCalibrationReader, quantize_int8
    from model_lifecycle.sources import calibration_images

    meta = read_version(version)
    export_onnx(load_detector(version), meta.onnx_path)
    if int8:
        calibration = FrameCalibrationReader(calibration_images(16), meta.input_size)
        quantize_int8(meta.onnx_path, meta.int8_onnx_path, calibration)


@pytest.fixture
def edge_config(
    tmp_path: Path, settings: PlatformSettings, edge_model: Path, fallback_model: Path
) -> Callable[..., EdgeConfig]:
    """Build an EdgeConfig for a test: private state dir, no metrics port, the test model and the
    shipped fallback."""

    def make(cameras: list[dict[str, Any]], **sections: Any) -> EdgeConfig:
        data: dict[str, Any] = {
            "facility": "FAC-TEST",
            "cameras": cameras,
            "engine": {"name": "onnxruntime", "precision": "int8", "threads": 2},
            "model": {"version": str(edge_model), "fallback": str(fallback_model)},
            "metrics": {"port": 0},
            "state_dir": str(tmp_path / "state"),
            "outbox": {"path": str(tmp_path / "state" / "outbox"), "sync": False},
            "redis_url": None,
        }
        for key, value in sections.items():
            data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
        return build_config(data, settings, "test")

    return make


class EventCollector:
    """Consumes DetectionBatch messages in a thread and keeps every event (duplicates included)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.events: list[pb.DetectionEvent] = []
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=200,
            fetch_max_wait_ms=50,
            metadata_max_age_ms=500,
            session_timeout_ms=6000,
            reconnect_backoff_max_ms=500,
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for message in self._consumer:
                    self.events.extend(pb.DetectionBatch.FromString(message.value).events)
            except Exception:  # broker gone: keep polling until the test stops us
                time.sleep(0.1)

    @property
    def ids(self) -> list[str]:
        return [e.event_id for e in self.events]

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


@pytest.fixture
def collect() -> Iterator[Callable[[str, str], EventCollector]]:
    collectors: list[EventCollector] = []

    def make(bootstrap: str, topic: str) -> EventCollector:
        collectors.append(EventCollector(bootstrap, topic))
        return collectors[-1]

    yield make
    for c in collectors:
        c.close()


class PrivateBroker:
    """A Tansu broker of this test alone, on a fixed port across restarts (memory storage)."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        self.proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.home / f"tansu-{uuid.uuid4().hex[:6]}.log").open("wb"),
        )
        from wv.services.kafka import api_versions_probe

        deadline = time.monotonic() + 10
        while api_versions_probe(self.bootstrap, 0.5) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError("private Tansu broker did not start")
            time.sleep(0.05)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path)
    yield broker
    broker.kill()
