"""The ``wv`` console script refuses a bad configuration before any command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WV = Path(sys.executable).with_name("wv")


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("WV_DATABASE_URL", "foo", ["db", "status"]),
        ("WV_METRICS_PORT", "abc", ["services", "status"]),
        ("WV_KAFKA_BOOTSTRAP", "localhost", ["services", "status"]),
        ("WV_FACILITIES", "", ["db", "upgrade"]),
    ],
)
def test_a_bad_setting_stops_with_exit_code_2_naming_the_variable(
    variable: str, value: str, command: list[str]
) -> None:
    env = {**os.environ, variable: value}

    done = subprocess.run([str(WV), *command], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert variable in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_options_are_usage_errors_without_a_traceback() -> None:
    done = subprocess.run([str(WV), "services", "up", "--bogus"], capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert "No such option: --bogus" in done.stderr and "Traceback" not in done.stderr
