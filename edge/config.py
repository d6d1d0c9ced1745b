"""`edge.yaml`: the edge service's configuration (one facility, its cameras, engine, budgets, transport).

Options absent from the file take fleet-wide defaults from the environment: the connection
settings of :class:`edge.settings.EdgeSettings` (``WV_KAFKA_BOOTSTRAP``, ``WV_MODEL_STORE``, …) and
the options declared with ``env_default`` (``WV_LATENCY_BUDGET_MS``, ``WV_ENGINE``,
``WV_OUTBOX_QUOTA_MB``, …), so one fleet-wide environment plus a small per-box file is enough. A bad
file stops start-up with one message per problem, each naming the YAML path (and the ``WV_``
variable when the value came from the environment).

    facility: FAC-001
    cameras:
      - id: cam-1
        source: synthetic://seed=1
        policy: latest            # latest: drop stale frames | every: never drop (backpressure)
        zones:                    # optional; synthetic sources default to the simulator's lanes
          - {name: lane-a, rect: [0, 14, 640, 97]}
          - {name: hold, polygon: [[0, 300], [640, 300], [640, 346], [0, 346]]}
        routes: {"SKU-0001": lane-a, "SKU-01*": lane-b}   # expected zone per SKU (glob)
    engine: {name: onnxruntime, precision: int8, threads: 2}
    budgets: {latency_ms: 200, inference_deadline_ms: 45}
    transport: {kind: kafka}    # or grpc: grpc_tls_ca (TLS), + grpc_tls_cert/grpc_tls_key (mTLS)

With ``cameras_from: registry`` the cameras come from the centre's camera registry (``wv db
cameras``, read through ``ListCameras`` at ``transport.grpc_address``) and follow it live; cameras
listed in the file then only give settings (policy, zones, routes, ...) to registry cameras of the
same id. Several edges can split one facility's registered cameras (``camera_registry.shares: n``,
each with its ``share_index``, e.g. n processes sharing one GPU box): each camera goes to the one
share a stable hash of its id picks (``edge.camera_registry.share_of``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.settings import EdgeSettings
from foundation.settings import ConfigError, env_default, env_defaults, env_fields, environment, variable

SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"
"""The model versions shipped with the code (`models/default`, `models/fallback`)."""


class EdgeConfigError(ConfigError):
    """edge.yaml (or a WV_ default it relies on) is invalid; the message names each problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZoneSpec(_Strict):
    """A named region of the frame: `rect` [x1, y1, x2, y2] or `polygon` [[x, y], ...] in pixels."""

    name: str = Field(min_length=1)
    rect: tuple[float, float, float, float] | None = None
    polygon: list[tuple[float, float]] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> ZoneSpec:
        if (self.rect is None) == (self.polygon is None):
            raise ValueError("give exactly one of rect: [x1, y1, x2, y2] or polygon: [[x, y], ...]")
        if self.rect is not None and not (self.rect[0] < self.rect[2] and self.rect[1] < self.rect[3]):
            raise ValueError("rect needs x1 < x2 and y1 < y2")
        if self.polygon is not None and len(self.polygon) < 3:
            raise ValueError("polygon needs at least 3 points")
        return self

    def points(self) -> list[tuple[float, float]]:
        if self.rect is not None:
            x1, y1, x2, y2 = self.rect
            return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        assert self.polygon is not None
        return list(self.polygon)


class ReconnectConfig(_Strict):
    base_s: float = Field(default=0.5, gt=0, description="First reconnect delay (doubles, with full jitter).")
    cap_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")


class CameraConfig(_Strict):
    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="synthetic://…, file:///path.mp4 or rtsp://…")
    policy: Literal["latest", "every"] = Field(
        default="latest",
        description=(
            "latest: drop frames the engine cannot keep up with (live cameras) | every: never drop, "
            "hold the source back. Default: every for a file:// source read as fast as possible "
            "(each recorded frame is processed), latest otherwise."
        ),
    )
    queue_size: int = Field(default=8, ge=1, le=1024, description="Frames waiting for inference (`every`).")
    zones: list[ZoneSpec] = Field(default_factory=list)
    routes: dict[str, str] = Field(default_factory=dict, description="SKU glob → expected zone.")
    reconnect: ReconnectConfig = ReconnectConfig()
    restart_at_end: bool = Field(default=False, description="Reopen a finite source (file) when it ends.")
    interval: int = Field(
        default=1,
        ge=1,
        le=30,
        description=(
            "Infer every k-th frame (DeepStream's `interval`); the tracker's motion prediction "
            "carries the boxes across the frames between."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _default_policy(cls, data: Any) -> Any:
        """A recorded file not paced at its frame rate is processed frame by frame (`every`)."""
        if isinstance(data, dict) and data.get("policy") is None and isinstance(data.get("source"), str):
            from edge.sources.capture import FileSource
            from edge.sources.factory import open_source

            try:
                source = open_source(data["source"], "validation")
            except ValueError:
                return data  # the source validator names the problem
            every = isinstance(source, FileSource) and not source.realtime
            data = {**data, "policy": "every" if every else "latest"}
        return data

    @field_validator("source")
    @classmethod
    def _source_uri(cls, v: str) -> str:
        from edge.sources.factory import open_source

        open_source(v, "validation")  # builds without connecting; ValueError names the problem
        return v

    @model_validator(mode="after")
    def _routes_name_zones(self) -> CameraConfig:
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError(f"zone names must be unique, got {names}")
        unknown = sorted({z for z in self.routes.values()} - set(names)) if names else []
        if unknown:
            raise ValueError(f"routes name zones {unknown} that are not among the zones {names}")
        return self


class CaptureConfig(_Strict):
    workers: int = Field(
        default=0,
        ge=0,
        le=256,
        description=(
            "Decode processes (0: one reader thread per camera inside the edge process). Cameras are "
            "spread over them; frames reach inference through shared memory."
        ),
    )
    max_interval: int = Field(
        default=3,
        ge=1,
        le=30,
        description=(
            "Automatic interval: while live (latest) cameras drop frames, infer every k-th frame, "
            "k up to this (1: off); steps back once no frame was dropped for 30 s (longer after a "
            "step back that brought drops back) and the loop would keep up one lower. Default 3: on "
            "2 vCPUs, 3 cameras at 30 FPS keep every frame where interval 1 drops 6-35 % (docs/benchmarks.md)."
        ),
    )
    max_frame_mb: float = Field(
        default=6.3,
        gt=0,
        le=200,
        description="Largest decoded frame (1920x1080 BGR is 5.9 MB); sizes the shared-memory slots.",
    )


class EngineConfig(_Strict):
    name: str = Field(
        default="onnxruntime",
        description="A module of edge/backends/: onnxruntime, torch, tensorrt.",
        json_schema_extra=env_default("ENGINE"),
    )
    precision: Literal["fp32", "fp16", "bf16", "int8"] = Field(
        default="int8", description="Edge inference precision.", json_schema_extra=env_default("PRECISION")
    )
    device: str = Field(default="cpu", description="cpu, cuda or cuda:N (torch, tensorrt).")
    threads: int | None = Field(
        default=None, ge=1, le=256, description="Intra-op CPU threads (default: all cores)."
    )
    spin: bool = Field(default=False, description="ONNX Runtime workers spin between operators (see README).")
    cuda_graphs: bool = Field(
        default=False, description="torch on CUDA: replay a CUDA graph per batch-size bucket (powers of two)."
    )
    post_thread: bool = Field(
        default=True,
        description=(
            "Track, decide and write a batch on a second thread while the next one is inferred; "
            "false: one thread does both (they share the interpreter lock, see docs/benchmarks.md)."
        ),
    )
    zero_copy: bool = Field(
        default=True,
        description=(
            "torch on CUDA with decode workers: page-lock the workers' shared-memory frame slots so "
            "the GPU copies frames straight from them (false: through a pinned buffer on the CPU)."
        ),
    )


class ModelSpec(_Strict):
    models_dir: Path = Field(description="Model version directories and production.json live here.")
    version: str | None = Field(
        default=None, description="Pin a version (a directory name or path); no hot-swap."
    )
    pointer: Path | None = Field(
        default=None, description="Pointer file followed for hot-swap (default production.json)."
    )
    default: Path = Field(default=SHIPPED_MODELS / "default", description="Used when no pointer exists yet.")
    fallback: Path | None = Field(
        default=SHIPPED_MODELS / "fallback",
        description="Straggler fallback model version directory (skipped if absent).",
    )
    fallback_precision: Literal["fp32", "int8"] = "fp32"

    @property
    def pointer_path(self) -> Path:
        return self.pointer or self.models_dir / "production.json"


class BudgetConfig(_Strict):
    latency_ms: float = Field(
        default=200.0,
        gt=0,
        description="End-to-end budget per frame (capture → outbox).",
        json_schema_extra=env_default("LATENCY_BUDGET_MS"),
    )
    inference_deadline_ms: float = Field(
        default=45.0,
        gt=0,
        description="Primary-model deadline before the fallback answers.",
        json_schema_extra=env_default("INFERENCE_DEADLINE_MS"),
    )
    max_batch: int = Field(default=16, ge=1, le=1024, description="Upper bound for the adaptive batch size.")
    fallback: bool = Field(
        default=True, description="Run the fallback model when the primary misses its deadline."
    )

    @model_validator(mode="after")
    def _deadline_inside_budget(self) -> BudgetConfig:
        if self.inference_deadline_ms >= self.latency_ms:
            raise ValueError(
                "inference_deadline_ms (default WV_INFERENCE_DEADLINE_MS) must be below "
                "latency_ms (default WV_LATENCY_BUDGET_MS)"
            )
        return self


class TrackingConfig(_Strict):
    iou_threshold: float = Field(default=0.3, gt=0, lt=1)
    min_hits: int = Field(default=3, ge=1, description="Frames before a track is confirmed (and reported).")
    max_age: int = Field(
        default=10, ge=1, description="Frames a lost track waits before it has left the view."
    )


class DecisionConfig(_Strict):
    smoothing_prior: float = Field(default=0.05, gt=0, description="Dirichlet pseudo-count per condition.")
    smoothing_discount: float = Field(default=1.0, gt=0, le=1, description="Per-frame forgetting (1: none).")
    damage_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Smoothed p(not ok) that flags `damaged`."
    )
    critical_damage: float = Field(
        default=0.9, gt=0, le=1, description="p(not ok) from which `damaged` is critical."
    )
    hard_example_band: tuple[float, float] = Field(
        description="Smoothed confidence band of `low_confidence`."
    )
    unknown_distance: float = Field(
        default=0.35, gt=0, le=2, description="Cosine distance that flags `unknown_appearance`."
    )
    reference_min_count: int = Field(
        default=5, ge=1, description="Samples before a SKU reference is trusted."
    )
    reference_capacity: int = Field(
        default=200, ge=1, description="Most frequent SKUs whose references are cached."
    )
    reference_min_confidence: float = Field(
        default=0.9, gt=0, le=1, description="Confidence to learn a reference."
    )
    detection_sample_rate: float = Field(
        default=0.02, ge=0, le=1, description="Share of per-frame detections sent."
    )
    simulator_truth: bool = Field(
        default=True,
        description=(
            "On synthetic sources the simulator plays the barcode reader: package id, SKU and expected "
            "zone come from its ground truth (simulator.identity)."
        ),
    )

    @field_validator("hard_example_band")
    @classmethod
    def _band(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 1:
            raise ValueError("expected [low, high] with 0 <= low < high <= 1")
        return v


class OutboxConfig(_Strict):
    path: Path
    ttl_hours: float = Field(
        default=48.0,
        gt=0,
        description="Time-to-live of unacknowledged events.",
        json_schema_extra=env_default("OUTBOX_TTL_HOURS"),
    )
    quota_mb: float = Field(
        default=512.0, gt=0, description="Disk quota.", json_schema_extra=env_default("OUTBOX_QUOTA_MB")
    )
    sync: bool = Field(default=True, description="fsync each write (survives power loss, not just a crash).")
    memtable_mb: float = Field(
        default=16,
        gt=0,
        description="RocksDB write buffer: the outbox's memory grows up to this, then flushes.",
    )


_PEM_MARKERS = {
    "grpc_tls_ca": b"-----BEGIN CERTIFICATE-----",
    "grpc_tls_cert": b"-----BEGIN CERTIFICATE-----",
    "grpc_tls_key": b"PRIVATE KEY-----",
}


def _check_pem(path: Path, marker: bytes) -> None:
    """The file exists, is readable and holds the PEM block expected; never quotes its content."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"no such file {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, expected a PEM file") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if marker not in content:
        what = "private key" if b"PRIVATE" in marker else "certificate"
        raise ValueError(f"{path} holds no PEM {what}")


class TransportConfig(_Strict):
    kind: Literal["kafka", "grpc"] = "kafka"
    kafka_bootstrap: str
    topic_prefix: str
    grpc_address: str
    grpc_tls_ca: Path | None = Field(
        default=None, description="CA bundle to verify the centre (enables TLS)."
    )
    grpc_tls_cert: Path | None = Field(
        default=None,
        description="Client certificate chain (PEM) presented to the centre (mTLS); needs grpc_tls_key.",
    )
    grpc_tls_key: Path | None = Field(
        default=None, description="Private key (PEM) of grpc_tls_cert (secret: keep the file 0600)."
    )
    batch_events: int = Field(default=500, ge=1, le=10_000, description="Events per DetectionBatch message.")
    timeout_s: float = Field(default=5.0, gt=0, description="Wait for the centre's acknowledgement.")
    grpc_stream_deadline_s: float = Field(
        default=300.0,
        gt=0,
        description="Deadline of each StreamDetectionEvents stream; it is closed between batches and a new "
        "one opened before fewer than timeout_s remain (no batch in flight at expiry; spreads streams "
        "over load-balanced centres).",
    )
    breaker_failures: int = Field(default=3, ge=1, description="Consecutive failures that open the circuit.")
    breaker_reset_s: float = Field(default=5.0, gt=0, description="Open circuit's wait before a probe.")
    backoff_base_s: float = Field(default=0.2, gt=0)
    backoff_cap_s: float = Field(default=10.0, gt=0)

    @field_validator("grpc_tls_ca", "grpc_tls_cert", "grpc_tls_key")
    @classmethod
    def _readable_pem(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is not None:
            _check_pem(v, _PEM_MARKERS[info.field_name or ""])
        return v

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> TransportConfig:
        if self.grpc_stream_deadline_s < 2 * self.timeout_s:
            raise ValueError(
                f"transport.grpc_stream_deadline_s ({self.grpc_stream_deadline_s:g}) must be at least twice "
                f"transport.timeout_s ({self.timeout_s:g}): a stream is replaced when less than timeout_s is left"
            )
        return self

    @model_validator(mode="after")
    def _client_pair(self) -> TransportConfig:
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            missing = "grpc_tls_key" if self.grpc_tls_key is None else "grpc_tls_cert"
            raise ValueError(
                "transport.grpc_tls_cert and transport.grpc_tls_key: set both to present a client "
                f"certificate (mTLS), or neither; transport.{missing} is missing"
            )
        return self


class HotswapConfig(_Strict):
    enabled: bool = True
    poll_s: float = Field(default=2.0, gt=0, description="How often the pointer file is checked.")
    shadow_frames: int = Field(
        default=32, ge=1, description="Sampled frames the candidate shadows before a verdict."
    )
    shadow_every: int = Field(default=2, ge=1, description="Shadow-run one batch in this many.")
    min_agreement: float = Field(
        default=0.8, ge=0, le=1, description="Share of detections both models agree on."
    )
    max_latency_ratio: float = Field(default=1.5, gt=0, description="Candidate p95 inference / current p95.")
    max_failures: int = Field(default=5, ge=1, description="Consecutive inference failures before rollback.")


class WatchdogConfig(_Strict):
    stall_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "A working thread (inference loop, camera reader, outbox relay) that has work but made no "
            "progress for this long fails /healthz and wv_edge_healthy, and the edge exits with code 3."
        ),
        json_schema_extra=env_default("EDGE_STALL_S"),
    )


class ShutdownConfig(_Strict):
    timeout_s: float = Field(
        default=20.0,
        gt=0,
        description=(
            "SIGTERM/SIGINT stop the edge within this (inside Kubernetes' 30 s grace), flushing what it "
            "can; unsent events stay in the outbox for the next start. Past it, or on a second signal, "
            "the process exits at once with code 4."
        ),
        json_schema_extra=env_default("EDGE_SHUTDOWN_TIMEOUT_S"),
    )


class CameraRegistryConfig(_Strict):
    poll_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="cameras_from registry: how often the centre's camera registry is read.",
        json_schema_extra=env_default("CAMERA_REGISTRY_POLL_S"),
    )
    timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Deadline of one registry read (ListCameras)."
    )
    shares: int = Field(
        default=1,
        ge=1,
        le=1024,
        description=(
            "Edges that split the facility's registered cameras between them (several edges on one "
            "GPU box); each camera goes to exactly one share by a stable hash of its id."
        ),
        json_schema_extra=env_default("CAMERA_SHARES"),
    )
    share_index: int = Field(
        default=0,
        ge=0,
        description="This edge's share, 0 to shares - 1 (in Kubernetes: the StatefulSet pod's index).",
        json_schema_extra=env_default("CAMERA_SHARE_INDEX"),
    )

    @model_validator(mode="after")
    def _index_in_range(self) -> CameraRegistryConfig:
        if self.share_index >= self.shares:
            raise ValueError(
                f"camera_registry.share_index ({self.share_index}, default WV_CAMERA_SHARE_INDEX) must be "
                f"below camera_registry.shares ({self.shares}, default WV_CAMERA_SHARES)"
            )
        return self


class MetricsConfig(_Strict):
    host: str
    port: int = Field(ge=0, le=65535, description="0 disables the endpoint.")


class EdgeConfig(_Strict):
    facility: str = Field(min_length=1)
    cameras_from: Literal["file", "registry"] = Field(
        default="file",
        description=(
            "file: the cameras listed here | registry: the facility's enabled cameras in the centre's "
            "registry (`wv db cameras`), followed live; those listed here then give settings by id."
        ),
        json_schema_extra=env_default("CAMERAS_FROM"),
    )
    cameras: list[CameraConfig] = Field(default_factory=list)
    camera_registry: CameraRegistryConfig = CameraRegistryConfig()
    capture: CaptureConfig = CaptureConfig()
    engine: EngineConfig = EngineConfig()
    model: ModelSpec
    budgets: BudgetConfig = BudgetConfig()
    tracking: TrackingConfig = TrackingConfig()
    decisions: DecisionConfig
    outbox: OutboxConfig
    transport: TransportConfig
    hotswap: HotswapConfig = HotswapConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    metrics: MetricsConfig
    redis_url: str | None = Field(default=None, description="SKU reference cache; none: local cache only.")
    state_dir: Path

    @field_validator("camera_registry")
    @classmethod
    def _shares_need_the_registry(cls, v: CameraRegistryConfig, info: ValidationInfo) -> CameraRegistryConfig:
        """A file lists one edge's cameras explicitly: sharing them out would silently leave some
        of them unwatched by an edge that was told to run them."""
        if v.shares > 1 and info.data.get("cameras_from") == "file":
            raise ValueError(
                f"camera_registry.shares is {v.shares} but cameras_from is file: shares split the "
                "registry's cameras (cameras_from: registry); with a file, list each edge's own cameras"
            )
        return v

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, v: list[CameraConfig], info: ValidationInfo) -> list[CameraConfig]:
        if not v and info.data.get("cameras_from") == "file":
            raise ValueError(
                "list at least one camera, or take them from the registry (cameras_from: registry)"
            )
        ids = [c.id for c in v]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        return v


_SETTING_SOURCES = {
    ("model", "models_dir"): "model_store",
    ("transport", "kafka_bootstrap"): "kafka_bootstrap",
    ("transport", "topic_prefix"): "kafka_topic_prefix",
    ("transport", "grpc_address"): "grpc_address",
    ("metrics", "host"): "metrics_host",
    ("metrics", "port"): "metrics_port",
    ("redis_url",): "redis_url",
}
"""Options whose default is a process setting (named in error messages by its variable)."""


def defaults(settings: EdgeSettings, facility: str) -> dict[str, Any]:
    """The option values that come from the process settings."""
    return {
        "model": {"models_dir": str(settings.models_dir)},
        "decisions": {"hard_example_band": [settings.hard_example_low, settings.hard_example_high]},
        "outbox": {"path": str(settings.state_dir / "edge" / facility / "outbox")},
        "transport": {
            "kafka_bootstrap": settings.kafka_bootstrap,
            "topic_prefix": settings.kafka_topic_prefix,
            "grpc_address": settings.grpc_address,
        },
        "metrics": {"host": settings.metrics_host, "port": settings.metrics_port},
        "redis_url": settings.redis_url,
        "state_dir": str(settings.state_dir),
    }


def _env_sources() -> dict[tuple[str, ...], str]:
    sources = {path: variable(field) for path, field in _SETTING_SOURCES.items()}
    sources.update(env_fields(EdgeConfig))
    return sources


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _explain(error: ValidationError, origin: str, given: dict[str, Any]) -> str:
    sources = _env_sources()
    lines = []
    for item in error.errors():
        loc = tuple(str(p) for p in item["loc"])
        where = ".".join(loc) or "(top level)"
        env = sources.get(loc)
        from_env = env is not None and _lookup(given, loc) is None
        suffix = f" (default from {env})" if from_env else ""
        lines.append(f"{where}: {item['msg']}{suffix}")
    return f"invalid edge configuration in {origin}:\n  " + "\n  ".join(lines)


def _lookup(data: dict[str, Any], loc: tuple[str, ...]) -> Any:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def build_config(data: dict[str, Any], settings: EdgeSettings, origin: str = "edge.yaml") -> EdgeConfig:
    """Validate `data` (parsed YAML or CLI options) over the fleet-wide defaults."""
    if not isinstance(data, dict):
        raise EdgeConfigError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    facility = str(data.get("facility") or "unknown")
    fleet = _merge(defaults(settings, facility), env_defaults(EdgeConfig, environment()))
    try:
        return EdgeConfig.model_validate(_merge(fleet, data))
    except ValidationError as exc:
        raise EdgeConfigError(_explain(exc, origin, data)) from None


def load_config(path: Path, settings: EdgeSettings) -> EdgeConfig:
    """Read and validate an edge.yaml file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise EdgeConfigError(f"cannot read edge configuration {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise EdgeConfigError(f"{path} is not valid YAML: {exc}") from None
    return build_config(data, settings, str(path))


def single_camera(
    facility: str, camera: str, source: str, settings: EdgeSettings, policy: str | None = None
) -> EdgeConfig:
    """The `wv edge run --facility F --camera C --source URI` shorthand (policy None: the source's default)."""
    data = {"facility": facility, "cameras": [{"id": camera, "source": source, "policy": policy}]}
    return build_config(data, settings, "command-line options")
