"""edge.yaml validation: defaults from WV_ settings, one clear message per problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.config import EdgeConfigError, build_config, load_config, single_camera
from wv.settings import PlatformSettings


def test_a_minimal_file_takes_budgets_engine_and_outbox_limits_from_the_environment(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("WV_LATENCY_BUDGET_MS", "150")
    monkeypatch.setenv("WV_OUTBOX_QUOTA_MB", "64")
    file = tmp_path / "edge.yaml"
    file.write_text("facility: FAC-9\ncameras:\n  - {id: c1, source: 'synthetic://seed=1'}\n")
    cfg = load_config(file, PlatformSettings.load())
    assert cfg.budgets.latency_ms == 150 and cfg.outbox.quota_mb == 64
    assert cfg.cameras[0].policy == "latest" and cfg.engine.name == "onnxruntime"
    assert cfg.model.pointer_path.name == "production.json"


def test_the_file_overrides_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WV_INFERENCE_DEADLINE_MS", "30")
    file = tmp_path / "edge.yaml"
    file.write_text(
        "facility: F\n"
        "cameras: [{id: c1, source: 'synthetic://', policy: every}]\n"
        "budgets: {inference_deadline_ms: 60}\n"
    )
    assert load_config(file, PlatformSettings.load()).budgets.inference_deadline_ms == 60


def test_every_problem_is_named_with_its_path(tmp_path: Path):
    file = tmp_path / "edge.yaml"
    file.write_text(
        """
facility: F
cameras:
  - {id: c1, source: 'ftp://x', policy: sometimes}
  - id: c1
    source: 'synthetic://seed=1'
    zones: [{name: a, rect: [10, 10, 5, 20]}]
"""
    )
    with pytest.raises(EdgeConfigError) as err:
        load_config(file, PlatformSettings.load())
    text = str(err.value)
    assert "cameras.0.policy" in text and "cameras.0.source" in text and "scheme must be" in text
    assert "cameras.1.zones.0" in text and "x1 < x2" in text


def test_a_bad_environment_default_names_the_variable(monkeypatch):
    monkeypatch.setenv("WV_INFERENCE_DEADLINE_MS", "500")
    with pytest.raises(EdgeConfigError, match="WV_INFERENCE_DEADLINE_MS"):
        single_camera("F", "c1", "synthetic://seed=1", PlatformSettings.load())


def test_routes_must_name_configured_zones():
    with pytest.raises(EdgeConfigError, match="not among the zones"):
        from edge.config import build_config

        build_config(
            {
                "facility": "F",
                "cameras": [
                    {
                        "id": "c",
                        "source": "synthetic://",
                        "zones": [{"name": "a", "rect": [0, 0, 1, 1]}],
                        "routes": {"SKU-*": "b"},
                    }
                ],
            },
            PlatformSettings.load(),
        )


def test_unreadable_or_invalid_yaml_is_reported(tmp_path: Path):
    with pytest.raises(EdgeConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", PlatformSettings.load())
    bad = tmp_path / "bad.yaml"
    bad.write_text("facility: [unclosed\n")
    with pytest.raises(EdgeConfigError, match="not valid YAML"):
        load_config(bad, PlatformSettings.load())


CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nMIGHsecretkeymaterial\n-----END PRIVATE KEY-----\n"


def _grpc_config(tmp_path: Path, **transport: str) -> Path:
    file = tmp_path / "edge.yaml"
    options = "".join(f", {name}: '{value}'" for name, value in transport.items())
    file.write_text(
        "facility: F\ncameras: [{id: c1, source: 'synthetic://'}]\n"
        f"transport: {{kind: grpc, grpc_address: '127.0.0.1:1'{options}}}\n"
    )
    return file


def test_a_client_certificate_and_key_reach_the_grpc_transport(tmp_path: Path):
    from edge.publish.grpc import GrpcTransport
    from edge.service import make_transport

    (tmp_path / "ca.crt").write_text(CERT_PEM)
    (tmp_path / "edge.crt").write_text(CERT_PEM)
    (tmp_path / "edge.key").write_text(KEY_PEM)
    cfg = load_config(
        _grpc_config(
            tmp_path,
            grpc_tls_ca=str(tmp_path / "ca.crt"),
            grpc_tls_cert=str(tmp_path / "edge.crt"),
            grpc_tls_key=str(tmp_path / "edge.key"),
        ),
        PlatformSettings.load(),
    )
    transport = make_transport(cfg, "token")
    assert isinstance(transport, GrpcTransport)
    assert (transport.tls_ca, transport.tls_cert, transport.tls_key) == (
        tmp_path / "ca.crt",
        tmp_path / "edge.crt",
        tmp_path / "edge.key",
    )
    # neither is fine too (TLS from the CA alone, or plaintext)
    assert load_config(_grpc_config(tmp_path), PlatformSettings.load()).transport.grpc_tls_cert is None


@pytest.mark.parametrize("given", ["grpc_tls_cert", "grpc_tls_key"])
def test_a_client_certificate_without_its_key_or_a_key_without_its_certificate_is_refused(
    tmp_path: Path, given: str
):
    (tmp_path / "file.pem").write_text(CERT_PEM if given == "grpc_tls_cert" else KEY_PEM)
    missing = "grpc_tls_key" if given == "grpc_tls_cert" else "grpc_tls_cert"
    with pytest.raises(EdgeConfigError) as err:
        load_config(_grpc_config(tmp_path, **{given: str(tmp_path / "file.pem")}), PlatformSettings.load())
    text = str(err.value)
    assert "transport.grpc_tls_cert and transport.grpc_tls_key: set both" in text
    assert f"transport.{missing} is missing" in text
    assert "secretkeymaterial" not in text


def test_missing_unreadable_or_wrong_tls_files_are_named_without_their_content(tmp_path: Path):
    (tmp_path / "edge.crt").write_text(CERT_PEM)
    (tmp_path / "edge.key").write_text(KEY_PEM)
    (tmp_path / "swapped.key").write_text(CERT_PEM)  # a certificate where the key belongs
    (tmp_path / "key-as-cert.crt").write_text(KEY_PEM)
    (tmp_path / "dir.key").mkdir()
    cases = {
        ("grpc_tls_key", "nowhere.key"): "no such file",
        ("grpc_tls_key", "dir.key"): "is a directory",
        ("grpc_tls_key", "swapped.key"): "holds no PEM private key",
        ("grpc_tls_ca", "nowhere.crt"): "no such file",
    }
    for (setting, name), problem in cases.items():
        values = {"grpc_tls_cert": str(tmp_path / "edge.crt"), "grpc_tls_key": str(tmp_path / "edge.key")}
        values[setting] = str(tmp_path / name)
        with pytest.raises(EdgeConfigError) as err:
            load_config(_grpc_config(tmp_path, **values), PlatformSettings.load())
        text = str(err.value)
        assert f"transport.{setting}:" in text and problem in text and text.count("transport.") == 1, text
    with pytest.raises(EdgeConfigError) as err:
        load_config(
            _grpc_config(
                tmp_path,
                grpc_tls_cert=str(tmp_path / "key-as-cert.crt"),
                grpc_tls_key=str(tmp_path / "key-as-cert.crt"),
            ),
            PlatformSettings.load(),
        )
    text = str(err.value)
    assert "transport.grpc_tls_cert:" in text and "holds no PEM certificate" in text
    assert "secretkeymaterial" not in text and "BEGIN" not in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_key_is_named(tmp_path: Path):
    (tmp_path / "edge.crt").write_text(CERT_PEM)
    key = tmp_path / "edge.key"
    key.write_text(KEY_PEM)
    key.chmod(0)
    file = _grpc_config(tmp_path, grpc_tls_cert=str(tmp_path / "edge.crt"), grpc_tls_key=str(key))
    with pytest.raises(EdgeConfigError, match=r"transport\.grpc_tls_key: .*cannot read .*Permission denied"):
        load_config(file, PlatformSettings.load())


def test_a_recorded_file_is_processed_frame_by_frame_unless_paced_or_told_otherwise():
    settings = PlatformSettings.load()

    def policy(source: str, given: str | None = None) -> str:
        return single_camera("F", "c1", source, settings, given).cameras[0].policy

    assert policy("file:///clips/belt.mp4") == "every"
    assert policy("file:///clips/belt.mp4?realtime=1") == "latest"  # paced like a live camera
    assert policy("file:///clips/belt.mp4", "latest") == "latest"
    assert policy("rtsp://10.0.0.12:554/stream1") == "latest"


def test_the_stall_limit_and_the_stop_deadline_take_fleet_defaults_from_the_environment(monkeypatch):
    monkeypatch.setenv("WV_EDGE_STALL_S", "12")
    monkeypatch.setenv("WV_EDGE_SHUTDOWN_TIMEOUT_S", "8")
    cfg = single_camera("F", "c1", "synthetic://", PlatformSettings.load())
    assert cfg.watchdog.stall_s == 12 and cfg.shutdown.timeout_s == 8


def test_an_edge_s_camera_share_comes_from_the_file_or_the_environment_and_must_be_below_the_shares(
    monkeypatch,
):
    monkeypatch.setenv("WV_CAMERA_SHARES", "4")
    monkeypatch.setenv("WV_CAMERA_SHARE_INDEX", "3")
    data = {"facility": "F", "cameras_from": "registry"}
    registry = build_config(data, PlatformSettings.load()).camera_registry
    assert (registry.shares, registry.share_index) == (4, 3)
    monkeypatch.setenv("WV_CAMERA_SHARE_INDEX", "4")
    with pytest.raises(
        EdgeConfigError, match=r"share_index \(4, default WV_CAMERA_SHARE_INDEX\) must be below"
    ):
        build_config(data, PlatformSettings.load())
    registry = build_config(
        {**data, "camera_registry": {"share_index": 1}}, PlatformSettings.load()
    ).camera_registry
    assert (registry.shares, registry.share_index) == (4, 1)  # the file wins


def test_shares_of_cameras_listed_in_a_file_are_refused_naming_the_field(monkeypatch):
    monkeypatch.setenv("WV_CAMERA_SHARES", "2")
    with pytest.raises(EdgeConfigError, match=r"camera_registry.shares is 2 but cameras_from is file"):
        single_camera("F", "c1", "synthetic://", PlatformSettings.load())
