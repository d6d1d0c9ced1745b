"""YOLO folders (data.yaml + labels/*.txt) in, and project datasets out split by package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_lifecycle.datasets.base import ImportFailed
from model_lifecycle.datasets.importer import export_dataset, import_dataset

from .conftest import records


def yolo_folder(photos: Path, root: Path, wide_labels: str) -> Path:
    for split, name in (("train", "wide.jpg"), ("train", "square.jpg"), ("val", "tall.png")):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / name, root / "images" / split / name)
    (root / "labels" / "train" / "wide.txt").write_text(wide_labels)
    (root / "labels" / "val" / "tall.txt").write_text("1 0.5 0.5 0.2 0.25\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: {0: box_ok, 1: box_torn}\n"
    )
    return root


def test_yolo_labels_become_pixel_boxes_and_unlabelled_images_are_background(
    photos: Path, tmp_path: Path
) -> None:
    src = yolo_folder(photos, tmp_path / "yolo", "0 0.25 0.5 0.1 0.2\n\n1 0.1 0.1 0.2 0.2 0.3 0.3\n")
    import_dataset("yolo", src, tmp_path / "ds")

    recs = {r["source"]["key"]: r for r in records(tmp_path / "ds")}
    assert [p["box"] for p in recs["images/train/wide.jpg"]["packages"]] == [
        [40, 48, 60, 72],
        [20, 12, 60, 36],
    ]
    assert [p["condition"] for p in recs["images/train/wide.jpg"]["packages"]] == ["ok", "torn"]
    assert recs["images/train/square.jpg"]["packages"] == []
    ids = [p["package_id"] for p in recs["images/train/wide.jpg"]["packages"]]
    assert ids[0].startswith("img-") and ids[0].endswith("#0")  # named by the photo's content, not its path
    import_dataset("yolo", src, tmp_path / "again")
    assert {r["source"]["key"]: r for r in records(tmp_path / "again")}["images/train/wide.jpg"]["packages"][
        0
    ]["package_id"] == ids[0]
    assert recs["images/val/tall.png"]["source"]["split"] == "val"
    assert recs["images/val/tall.png"]["packages"][0]["box"] == [36, 60, 54, 100]


def test_bad_label_lines_are_named_by_file_and_line(photos: Path, tmp_path: Path) -> None:
    src = yolo_folder(photos, tmp_path / "yolo", "0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n0 half 0.5 0.1 0.1\n")
    with pytest.raises(ImportFailed) as failed:
        import_dataset("yolo", src, tmp_path / "ds")
    lines = list(failed.value.report.lines())
    assert any("labels/train/wide.txt: line 2: error: class index 7" in ln for ln in lines)
    assert any("wide.txt: line 3: error: expected 'class cx cy w h'" in ln for ln in lines)
    assert not (tmp_path / "ds").exists()


def test_export_to_yolo_keeps_each_package_on_one_side_and_imports_back(
    sim_dataset: Path, tmp_path: Path
) -> None:
    export_dataset("yolo", sim_dataset, tmp_path / "yolo", val_fraction=0.5)
    import_dataset("yolo", tmp_path / "yolo", tmp_path / "back")

    assert (tmp_path / "yolo" / "images" / "val").iterdir()
    before = {Path(r["file"]).name: r for r in records(sim_dataset)}
    for rec in records(tmp_path / "back"):
        orig = before[Path(rec["source"]["key"]).name]
        assert [p["condition"] for p in rec["packages"]] == [p["condition"] for p in orig["packages"]]
        for got, want in zip(rec["packages"], orig["packages"], strict=True):
            assert got["box"] == pytest.approx(want["box"], abs=0.02)
    splits = {r["source"]["split"] for r in records(tmp_path / "back")}
    assert splits == {"train", "val"}


def test_a_split_that_repeats_another_is_read_once(sim_dataset: Path, tmp_path: Path) -> None:
    export_dataset("yolo", sim_dataset, tmp_path / "yolo", val_fraction=0.0)  # writes val: images/train
    report = import_dataset("yolo", tmp_path / "yolo", tmp_path / "back")
    assert report.counts["images_imported"] == 4 and report.counts["split_repeated"] == 1
