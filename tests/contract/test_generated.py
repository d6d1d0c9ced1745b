"""The committed gRPC/protobuf code is exactly what ``make proto`` generates from the contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = "contract/proto/warehouse_vision.proto"
GENERATED = ["_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"]


@pytest.mark.timeout(120)
def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [
        sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT),
        f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
        f"--mypy_out={tmp_path}", f"--mypy_grpc_out={tmp_path}", str(ROOT / PROTO),
    ]  # fmt: skip
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=100)

    stem = PROTO.removesuffix(".proto")
    stale = [
        stem + suffix
        for suffix in GENERATED
        if (tmp_path / (stem + suffix)).read_text() != (ROOT / (stem + suffix)).read_text()
    ]
    assert stale == [], f"stale generated code {stale}: run `make proto` and commit the result"
