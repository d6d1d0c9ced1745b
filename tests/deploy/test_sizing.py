"""deploy/sizing.py's arithmetic and the figures docs/kubernetes.md and the README quote stay in step."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_sizing_is_what_the_script_computes() -> None:
    spec = importlib.util.spec_from_file_location("wv_deploy_sizing", ROOT / "deploy/sizing.py")
    assert spec is not None and spec.loader is not None
    sizing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sizing)
    rows = dict(sizing.arithmetic(bytes_per_package=2420))
    docs = (ROOT / "docs/kubernetes.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert rows["events/s at peak (x5 per package)"] == "1,400"
    assert rows["packages/s: average, peak"].startswith("26.6, 280")
    assert rows["outbox for 48 h at a facility"].startswith("218 MB")
    assert rows["Kafka at peak / per day (before replication x3)"].startswith("0.62 MB/s")
    assert rows["Kafka, 7 days retained, x3 replicas"].startswith("107 GB")
    assert rows["PostgreSQL per day / retained 90 days"] == "5.6 GB / 501 GB"
    assert rows["per shard retained (8 shards)"] == "63 GB"
    assert rows["per shard at peak (8 shards)"].startswith("175 events/s")
    for text in (docs, readme):
        for figure in ("1,400", "218 MB", "107 GB", "5.6 GB/day", "63 GB", "175 events/s", "2,420 B"):
            assert figure in text, figure
