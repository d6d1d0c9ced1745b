"""`wv demo` refuses a scenario it cannot run before it touches anything."""

from typer.testing import CliRunner

from wv.demo.cli import app


def test_an_unknown_drift_preset_is_refused_naming_the_presets() -> None:
    result = CliRunner().invoke(app, ["--drift", "next_year", "--no-ui"])

    assert result.exit_code == 2
    assert "unknown drift preset 'next_year'" in result.output and "camera_bump" in result.output


def test_a_swap_before_the_drift_is_refused() -> None:
    result = CliRunner().invoke(app, ["--drift-day", "5", "--swap-day", "4", "--no-ui"])

    assert result.exit_code == 2
    assert "drift day (5) < swap day (4)" in result.output
