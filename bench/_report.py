"""Shared output of every benchmark: a Markdown table on stdout and `.local/bench/<name>.json`.

JSON layout (the project's benchmark convention): {"name", "when", "host": {cpu, cores, gpu}, "metrics", "baseline"}.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path


def host_info() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            gpu = out.splitlines()[0] if out else None
        except (OSError, subprocess.SubprocessError):
            gpu = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpu": gpu}


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_report(
    name: str,
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    table_rows: Sequence[Mapping[str, object]],
) -> Path:
    """Print the table, write the JSON under $WV_STATE_DIR/bench (default .local/bench), return its path."""
    print(markdown_table(table_rows))
    out_dir = Path(os.environ.get("WV_STATE_DIR", ".local")) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {
        "name": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_info(),
        "metrics": dict(metrics),
        "baseline": dict(baseline),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
