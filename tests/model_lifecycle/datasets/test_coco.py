"""COCO detection JSON in and out of the project's dataset layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_lifecycle.datasets.base import ConditionRules, ImportFailed, ImportOptions
from model_lifecycle.datasets.importer import export_dataset, import_dataset

from .conftest import no_partial_left, records


def coco_doc(**extra: list) -> dict:
    doc = {
        "images": [
            {"id": 1, "file_name": "wide.jpg", "width": 200, "height": 120},
            {"id": 2, "file_name": "tall.png", "width": 90, "height": 160},
        ],
        "categories": [{"id": 1, "name": "parcel_crushed"}, {"id": 2, "name": "parcel"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 50, 40]},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [100, 10, 30, 30],
                "attributes": {"condition": "wet"},
            },
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [5, 5, 40, 60], "attributes": {"track_id": 7}},
        ],
    }
    for key, items in extra.items():
        doc[key] = doc[key] + items
    return doc


def test_coco_boxes_conditions_and_tracks_land_in_the_dataset(photos: Path, tmp_path: Path) -> None:
    (photos / "coco.json").write_text(json.dumps(coco_doc()))
    opts = ImportOptions(ConditionRules(default="ok"))
    report = import_dataset("coco", photos / "coco.json", tmp_path / "ds", opts)

    recs = records(tmp_path / "ds")
    assert [(r["width"], r["height"]) for r in recs] == [(200, 120), (90, 160)]
    assert [p["box"] for p in recs[0]["packages"]] == [[10, 20, 60, 60], [100, 10, 130, 40]]
    assert [p["condition"] for r in recs for p in r["packages"]] == ["crushed", "wet", "ok"]
    assert recs[1]["packages"][0]["package_id"] == "7" and recs[0]["packages"][0]["package_type"] == "parcel"
    assert report.ok and report.counts["boxes_imported"] == 3
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["counts"] == {"frames": 2, "packages": 3, "conditions": {"crushed": 1, "ok": 1, "wet": 1}}


def test_bad_input_is_reported_with_file_and_id_and_nothing_is_written(photos: Path, tmp_path: Path) -> None:
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    doc = coco_doc(
        images=[
            {"id": 1, "file_name": "square.jpg"},
            {"id": 3, "file_name": "gone.jpg"},
            {"id": 4, "file_name": "broken.jpg"},
        ],
        annotations=[
            {"id": 4, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"id": 5, "image_id": 2, "category_id": 1, "bbox": [60, 100, 50, 80]},
            {"id": 6, "image_id": 2, "category_id": 1, "bbox": [300, 300, 5, 5]},
            {"id": 7, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5]},
        ],
    )
    (photos / "coco.json").write_text(json.dumps(doc))
    with pytest.raises(ImportFailed) as failed:
        import_dataset("coco", photos / "coco.json", tmp_path / "ds")

    report = failed.value.report
    assert report.summary() == {
        "box_clipped": 1,
        "box_outside": 1,
        "boxes_imported": 3,
        "corrupt_image": 1,
        "duplicate_id": 1,
        "images_imported": 2,
        "images_read": 5,
        "missing_image": 1,
        "unknown_class": 3,
    }
    text = "\n".join(report.lines())
    assert "coco.json: annotation id 4: error: category_id 9 is not in 'categories'" in text
    assert "image id 1 (square.jpg): error: image id '1' already used" in text
    assert "image id 3 (gone.jpg): error: image file not found" in text
    assert "annotation id 7: error: class 'parcel' names no condition" in text
    assert not (tmp_path / "ds").exists() and no_partial_left(tmp_path)


def test_boxes_outside_the_image_can_be_refused(photos: Path, tmp_path: Path) -> None:
    doc = coco_doc()
    doc["annotations"][0]["bbox"] = [-5, 20, 50, 40]
    (photos / "coco.json").write_text(json.dumps(doc))
    opts = ImportOptions(ConditionRules(default="ok"), boxes="refuse")
    with pytest.raises(ImportFailed) as failed:
        import_dataset("coco", photos / "coco.json", tmp_path / "ds", opts)
    assert failed.value.report.summary()["box_outside"] == 1


def test_a_simulator_dataset_exported_to_coco_imports_back_unchanged(
    sim_dataset: Path, tmp_path: Path
) -> None:
    export_dataset("coco", sim_dataset, tmp_path / "coco")
    import_dataset("coco", tmp_path / "coco", tmp_path / "back")

    before, after = records(sim_dataset), records(tmp_path / "back")
    keys = ("box", "condition", "package_id")
    assert [[{k: p[k] for k in keys} for p in r["packages"]] for r in before] == [
        [{k: p[k] for k in keys} for p in r["packages"]] for r in after
    ]


def test_a_file_shaped_unlike_coco_is_a_report_not_a_traceback(photos: Path, tmp_path: Path) -> None:
    (photos / "coco.json").write_text(
        json.dumps({"images": [{"id": 1, "file_name": "wide.jpg"}], "annotations": ["x"]})
    )
    with pytest.raises(ImportFailed) as failed:
        import_dataset("coco", photos / "coco.json", tmp_path / "ds")
    assert [e.kind for e in failed.value.report.errors] == ["parse_error"]
    assert not (tmp_path / "ds").exists() and no_partial_left(tmp_path)
