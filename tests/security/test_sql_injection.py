"""SQL injection: hostile strings through every text field that reaches the database — event and
flag fields over gRPC and over Kafka ingest, the gRPC query fields, the model registry's and the
camera registry's command lines — are stored verbatim or refused with a reason; the schema and
the reference data survive. Camera ids must be registered (``[A-Za-z0-9_.-]``, so no hostile one
can be): events naming a hostile camera are dead letters (``unknown_camera``, the id verbatim in
the reason). A static check backs this up: no SQL text is ever built from a function's arguments.
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from kafka import KafkaProducer

from bench.fixtures.events import EventFactory, detection_batch
from bench.reliability.faults import wait_until
from bench.reliability.pipeline import Endpoints, ingest_node
from contract.events import anomaly_flag, from_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from contract.proto import warehouse_vision_pb2_grpc as pb_grpc

from .conftest import ROOT, TOKEN

pytestmark = pytest.mark.timeout(240)

STORED = [
    "'; DROP TABLE packages; --",
    '"; DROP TABLE package_detections; --',
    "' OR '1'='1",
    "x'); DELETE FROM facilities; --",
    "%s %(event_id)s $1 {} \\ \\' E'\\x41'",
    "ünïcödé 🙂 \u202eevil\u202c \u2028",
    "tab\tnewline\ncr\r",
    "é" * 256,
]
"""Legal values: each must come back byte for byte."""
REFUSED = ["\x00", "a\x00'; DROP TABLE packages; --", "x" * 10_000]
"""Illegal values (NUL, 10 kB): each must be refused with a reason, never half-written."""
CAMERA_FIELDS = ("camera_id", "flag.camera_id")
"""Fields whose legal values must also be registered cameras: hostile ones never are."""
EVENT_FIELDS = (
    "event_id",
    "camera_id",
    "track_id",
    "package_id",
    "sku",
    "zone",
    "expected_zone",
    "model_version",
    "engine",
    "precision",
)
FLAG_FIELDS = ("source", "camera_id", "package_id", "zone")


def _schema(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
    ).fetchall()


def _hostile_events(seed: int) -> list[tuple[pb.DetectionEvent, str, str]]:
    """One decision per (field, hostile value): (event, field, value)."""
    factory = EventFactory("FAC-002", seed=seed)
    planted = []
    for n, value in enumerate(STORED + REFUSED):
        for field in EVENT_FIELDS:
            event = factory.decision()
            unique = f"{value}#{seed}-{n}" if field == "event_id" and value in STORED else value
            setattr(event, field, unique)
            planted.append((event, field, unique))
        for field in FLAG_FIELDS:
            event = factory.decision()
            at = from_timestamp(event.event_time)
            flag = anomaly_flag(
                kind="damaged", facility_id="FAC-002", flagged_at=at, evidence={"note": value}
            )
            setattr(flag, field, value)
            event.anomalies.append(flag)
            planted.append((event, f"flag.{field}", value))
    return planted


def _refused(value: str) -> bool:
    return "\x00" in value or len(value) > 256


def _rejection(field: str, value: str) -> str | None:
    """The reason an event carrying ``value`` in ``field`` is dead-lettered with (None: stored)."""
    if _refused(value):
        return "invalid_value"
    return "unknown_camera" if field in CAMERA_FIELDS else None


def _reasons(reasons: list[str]) -> list[str]:
    return sorted(reason.split(":")[0] for reason in reasons)


def _check_stored(conn: psycopg.Connection, planted: list[tuple[pb.DetectionEvent, str, str]]) -> None:
    """Legal values stored byte for byte; refused events left no row at all; unregistered
    cameras are named verbatim in their dead letter's reason."""
    for event, field, value in planted:
        rejection = _rejection(field, value)
        if rejection:
            if not _refused(event.event_id):
                rows = conn.execute(
                    "SELECT count(*) FROM package_detections WHERE event_id = %s", (event.event_id,)
                )
                assert rows.fetchone() == (0,), (field, value[:20])
            if rejection == "unknown_camera":
                where = " (anomalies.camera_id)" if field.startswith("flag.") else ""
                reasons = conn.execute(
                    "SELECT reason FROM dead_letters WHERE event_id = %s", (event.event_id,)
                )
                assert reasons.fetchall() == [(f"unknown_camera: {value} of facility FAC-002{where}",)]
            continue
        if field.startswith("flag."):
            statement = "SELECT {}, evidence->>'note' FROM anomaly_flags WHERE event_id = %s"
            expected: tuple[str, ...] = (value, value)
        else:
            statement, expected = "SELECT {} FROM package_detections WHERE event_id = %s", (value,)
        column = psycopg.sql.Identifier(field.removeprefix("flag."))
        row = conn.execute(psycopg.sql.SQL(statement).format(column), (event.event_id,)).fetchone()
        assert row == expected, (field, value[:20])


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(
        psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
    ).fetchone()
    return int(row[0]) if row else 0


def test_hostile_strings_over_grpc_and_kafka_are_stored_verbatim_or_refused_and_the_schema_survives(
    serve, db, database_url, kafka_bootstrap, topic_prefix, tmp_path, request
):
    schema = _schema(db)
    facilities = db.execute("SELECT * FROM facilities ORDER BY 1").fetchall()
    endpoints = Endpoints(database_url, kafka_bootstrap, None, topic_prefix)
    endpoints.ensure_topics()
    ingest = ingest_node(tmp_path / "ingest", endpoints)
    request.addfinalizer(ingest.process.kill)
    ingest.process.start()
    served = serve(WV_GRPC_TOKEN=TOKEN)
    ingest.start_wait()

    over_grpc = _hostile_events(seed=1)
    expected = _reasons([r for _, field, value in over_grpc if (r := _rejection(field, value))])
    expected_refusals = len(expected)
    stub = pb_grpc.WarehouseVisionServiceStub(grpc.insecure_channel(served.address))
    metadata = [("authorization", f"Bearer {TOKEN}")]
    batch = detection_batch([event for event, _, _ in over_grpc])
    acks = list(stub.StreamDetectionEvents(iter([batch]), metadata=metadata, timeout=60))
    rejected = [r for ack in acks for r in ack.rejected]
    assert _reasons([r.reason for r in rejected]) == expected
    assert sum(ack.written for ack in acks) == len(over_grpc) - expected_refusals

    over_kafka = _hostile_events(seed=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=8 * 2**20)
    for event, _, _ in over_kafka:  # one message each: a refused event is a dead letter, not a lost batch
        value = detection_batch([event]).SerializeToString()
        producer.send(f"{topic_prefix}detections", key=b"FAC-002", value=value)
    producer.flush(30)
    producer.close()
    stored = 2 * (len(over_grpc) - expected_refusals)
    wait_until(
        lambda: (
            _count(db, "package_detections") >= stored and _count(db, "dead_letters") >= 2 * expected_refusals
        ),
        90,
        "the Kafka messages stored or dead-lettered",
    )
    time.sleep(1)  # nothing more may arrive
    assert _count(db, "package_detections") == stored
    assert _count(db, "dead_letters") == 2 * expected_refusals  # gRPC refusals are dead-lettered too
    letters = db.execute("SELECT reason, raw FROM dead_letters WHERE source <> 'grpc'").fetchall()
    assert _reasons([r for r, _ in letters]) == expected
    sent = {detection_batch([e]).SerializeToString() for e, _, _ in over_kafka} | {
        e.SerializeToString() for e, _, _ in over_kafka
    }
    assert {bytes(raw) for _, raw in letters} <= sent  # the raw bytes, as received

    _check_stored(db, over_grpc)
    _check_stored(db, over_kafka)
    assert _schema(db) == schema
    assert db.execute("SELECT * FROM facilities ORDER BY 1").fetchall() == facilities

    # Query fields: every hostile value is answered, never with an internal error.
    for value in STORED + REFUSED:
        try:
            timeline = stub.QueryPackageHistory(pb.PackageID(package_id=value), metadata=metadata, timeout=10)
            assert timeline.package_id == value
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (
                value[:20],
                exc,
            )
        for method, request in (
            (stub.GetAnomalyReport, pb.AnomalyReportRequest(facility_id=value)),
            (stub.ListCameras, pb.CameraListRequest(facility_id=value)),
        ):
            try:
                method(request, metadata=metadata, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (
                    value[:20],
                    exc,
                )
    far = pb.AnomalyReportRequest(facility_id="FAC-002")
    far.start.seconds, far.end.seconds = 0, 10**12  # past the year 9999
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetAnomalyReport(far, metadata=metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _schema(db) == schema
    assert ingest.process.stop() == 0


def test_registry_command_line_stores_hostile_text_verbatim_and_refuses_hostile_versions(
    run_wv, db, database_url, tmp_path, model_version
):
    env = {"WV_DATABASE_URL": database_url, "WV_MODEL_STORE": str(model_version.parent)}
    schema = _schema(db)
    notes, approver, reason = STORED[0], STORED[1], STORED[5]  # names are stripped
    ok = run_wv(
        "model", "register", "v-inj", str(model_version), "--notes", notes, "--config", STORED[2], env=env
    )
    assert ok.returncode == 0, ok.stderr
    approved = run_wv("model", "approve", "v-inj", "--by", approver, "--reason", reason, env=env)
    assert approved.returncode == 0, approved.stderr
    row = db.execute(
        "SELECT notes, config, approved_by FROM model_versions WHERE version = 'v-inj'"
    ).fetchone()
    assert row == (notes, STORED[2], approver)
    history = db.execute("SELECT actor, reason FROM model_promotions WHERE version = 'v-inj'").fetchall()
    assert history == [(approver, reason)]

    for args in ([STORED[0]], [STORED[3]], ["v\x01"], ["x" * 10_000], ["v-2", "--parent", STORED[0]]):
        refused = run_wv("model", "register", args[0], str(model_version), *args[1:], env=env)
        output = refused.stdout + refused.stderr
        assert refused.returncode == 1 and "error:" in output and "Traceback" not in output, output[-800:]
    for args in (["history", STORED[1]], ["list", "--status", STORED[0]], ["list", "--json"]):
        answered = run_wv("model", *args, env=env)
        assert "Traceback" not in answered.stderr, answered.stderr[-800:]
    listed = json.loads(run_wv("model", "list", "--json", env=env).stdout)
    assert [m["version"] for m in listed] == ["v-inj"] and listed[0]["notes"] == notes
    assert _schema(db) == schema


def test_camera_command_line_stores_hostile_text_verbatim_and_refuses_hostile_ids(run_wv, db, database_url):
    env = {"WV_DATABASE_URL": database_url}
    schema = _schema(db)
    facilities = db.execute("SELECT * FROM facilities ORDER BY 1").fetchall()
    cameras = db.execute("SELECT * FROM cameras ORDER BY 1, 2").fetchall()
    for n, (source, description) in enumerate([(STORED[1], STORED[0]), (STORED[4], STORED[6])]):
        args = ["add", "FAC-002", f"cam-inj-{n}", "--source", source, "--description", description]
        added = run_wv("db", "cameras", *args, env=env)
        assert added.returncode == 0, added.stderr
        row = db.execute(
            "SELECT source_uri, description FROM cameras WHERE facility_id = 'FAC-002' AND camera_id = %s",
            (f"cam-inj-{n}",),
        ).fetchone()
        assert row == (source, description)
    for facility, camera in ((STORED[3], "cam-1"), ("FAC-002", STORED[0]), ("FAC-002", "x" * 10_000)):
        refused = run_wv("db", "cameras", "add", facility, camera, env=env)
        output = refused.stdout + refused.stderr
        assert refused.returncode == 1 and output.startswith("error:") and "Traceback" not in output, output[
            -800:
        ]
    listed = run_wv("db", "cameras", "list", "--facility", STORED[3], env=env)
    assert listed.returncode == 1 and "Traceback" not in listed.stderr, listed.stderr[-800:]
    assert len(db.execute("SELECT * FROM cameras").fetchall()) == len(cameras) + 2
    assert db.execute("SELECT * FROM facilities ORDER BY 1").fetchall() == facilities
    assert _schema(db) == schema


SQL_CALLS = {"execute", "executemany", "copy", "stream"}


def _interpolated(node: ast.expr) -> list[ast.expr]:
    """The expressions whose text ends up inside an SQL string built by f-string, %, + or .format."""
    if isinstance(node, ast.JoinedStr):
        return [
            v
            for part in node.values
            if isinstance(part, ast.FormattedValue)
            for v in _interpolated(part.value) or [part.value]
        ]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _interpolated(node.left) + _interpolated(node.right)
    if isinstance(node, ast.IfExp):
        return _interpolated(node.body) + _interpolated(node.orelse)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return [*node.args, *(k.value for k in node.keywords)]
    return []


def test_sql_text_is_never_built_from_a_function_argument():
    """Values go in as parameters; text may only interpolate constants and fragments built from them."""
    offenders = []
    for top in ("wv", "realtime", "edge", "quality", "assets", "orchestration"):
        for path in (ROOT / top).rglob("*.py"):
            if "_pb2" in path.name:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
                arguments = {a.arg for a in (*func.args.args, *func.args.kwonlyargs, *func.args.posonlyargs)}
                arguments -= {"self", "cls"}
                for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
                    if not (
                        isinstance(call.func, ast.Attribute) and call.func.attr in SQL_CALLS and call.args
                    ):
                        continue
                    for expr in _interpolated(call.args[0]):
                        names = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
                        if names & arguments:
                            offenders.append(f"{path.relative_to(ROOT)}:{call.lineno}: {ast.unparse(expr)}")
    assert not offenders, "SQL text built from arguments (pass them as parameters):\n" + "\n".join(offenders)


@pytest.fixture
def model_version(tmp_path: Path) -> Path:
    """A version directory as the registry needs it (it records the path and metrics.json)."""
    version = tmp_path / "models" / "v-inj"
    version.mkdir(parents=True)
    (version / "metrics.json").write_text(json.dumps({"note": STORED[0]}))
    return version
