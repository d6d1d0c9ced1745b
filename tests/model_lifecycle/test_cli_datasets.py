"""`wv model import` and `wv model export-dataset` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from model_lifecycle.cli import app


def coco_folder(root: Path, category: str) -> Path:
    root.mkdir()
    cv2.imwrite(str(root / "a.jpg"), np.full((90, 160, 3), 128, np.uint8))
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 160, "height": 90}],
        "categories": [{"id": 1, "name": category}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [150, 10, 20, 20]}],
    }
    (root / "labels.json").write_text(json.dumps(doc))
    return root


def test_import_reports_clipping_and_export_writes_yolo(tmp_path: Path) -> None:
    src = coco_folder(tmp_path / "src", "carton")
    result = CliRunner().invoke(
        app, ["import", "--format", "coco", str(src), str(tmp_path / "ds"), "--map", "carton=ok"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "annotation id 1: note: box 150.0,10.0,170.0,30.0 reaches outside the 160x90 image; clipped"
        in result.output
    )
    assert "imported 1 images, 1 boxes" in result.output

    result = CliRunner().invoke(
        app, ["export-dataset", "--format", "yolo", str(tmp_path / "ds"), str(tmp_path / "y")]
    )
    assert result.exit_code == 0, result.output
    assert (
        tmp_path / "y" / "labels" / "train" / "000000.txt"
    ).read_text() == "0 0.968750 0.222222 0.062500 0.222222\n"


def test_a_failed_import_exits_1_with_the_report_and_creates_nothing(tmp_path: Path) -> None:
    src = coco_folder(tmp_path / "src", "carton")
    result = CliRunner().invoke(
        app, ["import", "-f", "coco", str(src), str(tmp_path / "ds"), "--boxes", "refuse"]
    )
    assert result.exit_code == 1
    assert "error: class 'carton' names no condition" in result.stderr
    assert "summary: boxes_imported 0, images_imported 1, images_read 1, unknown_class 1" in result.stderr
    assert not (tmp_path / "ds").exists()
