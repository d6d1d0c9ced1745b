"""Label Studio JSON exports: rectangles plus a per-region or per-task condition choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_lifecycle.datasets.base import ImportFailed, ImportOptions
from model_lifecycle.datasets.importer import import_dataset

from .conftest import records


def rect(
    rid: str, x: float, y: float, w: float, h: float, label: str = "parcel", rotation: float = 0
) -> dict:
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}
    return {"id": rid, "type": "rectanglelabels", "from_name": "box", "to_name": "image", "value": value,
            "original_width": 200, "original_height": 120}  # fmt: skip


def choice(rid: str, value: str) -> dict:
    return {
        "id": rid,
        "type": "choices",
        "from_name": "condition",
        "to_name": "image",
        "value": {"choices": [value]},
    }


def test_per_region_and_per_task_choices_give_the_conditions(photos: Path, tmp_path: Path) -> None:
    tasks = [
        {
            "id": 11,
            "data": {"image": "/data/local-files/?d=photos/wide.jpg"},
            "annotations": [
                {"was_cancelled": True, "result": []},
                {
                    "result": [
                        rect("a", 5, 10, 25, 50),
                        choice("a", "crushed"),
                        rect("b", 50, 0, 10, 10),
                        choice("b", "wet"),
                    ]
                },
            ],
        },
        {
            "id": 12,
            "data": {"image": "/data/upload/3/0a1b2c3d-square.jpg"},
            "annotations": [
                {
                    "result": [
                        rect("c", 0, 0, 50, 50) | {"original_width": 64, "original_height": 64},
                        choice("task", "ok"),
                    ]
                }
            ],
        },
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    (tmp_path / "upload" / "3").mkdir(parents=True)
    (tmp_path / "upload" / "3" / "0a1b2c3d-square.jpg").write_bytes((photos / "square.jpg").read_bytes())
    import_dataset("label-studio", tmp_path / "export.json", tmp_path / "ds", ImportOptions(images=tmp_path))

    recs = records(tmp_path / "ds")
    assert [p["box"] for p in recs[0]["packages"]] == [[10, 12, 60, 72], [100, 0, 120, 12]]
    assert [p["condition"] for r in recs for p in r["packages"]] == ["crushed", "wet", "ok"]
    assert recs[1]["packages"][0]["box"] == [0, 0, 32, 32]


def test_json_min_export_and_refused_rotated_rectangles(photos: Path, tmp_path: Path) -> None:
    label = rect("x", 10, 10, 20, 20)["value"] | {"original_width": 200, "original_height": 120}
    tasks = [
        {"id": 1, "image": "/data/upload/1/wide.jpg", "label": [label], "condition": "torn"},
        {"id": 2, "image": "/data/upload/1/tall.png", "label": [label | {"rotation": 30}], "condition": "ok"},
    ]
    (tmp_path / "min.json").write_text(json.dumps(tasks))
    with pytest.raises(ImportFailed) as failed:
        import_dataset("label-studio", tmp_path / "min.json", tmp_path / "ds", ImportOptions(images=photos))
    assert [str(e).replace(str(tmp_path) + "/", "") for e in failed.value.report.errors] == [
        "min.json: task 2 (/data/upload/1/tall.png), label 1: error: rotated rectangle (30 deg) is not supported"
    ]
    tasks.pop()
    (tmp_path / "min.json").write_text(json.dumps(tasks))
    import_dataset("label-studio", tmp_path / "min.json", tmp_path / "ds", ImportOptions(images=photos))
    assert records(tmp_path / "ds")[0]["packages"][0] | {"package_id": ""} == {
        "box": [20, 12, 60, 36], "package_id": "", "sku": "", "package_type": "parcel", "condition": "torn",
        "zone": "", "expected_zone": "",
    }  # fmt: skip
