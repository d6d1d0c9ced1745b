"""Our mAP@0.5 agrees with pycocotools' on the detections `wv model eval` writes as COCO results.

The two differ by construction only in the interpolation of the precision/recall curve (ours:
every recall point, COCO: 101 fixed points), which moves AP by a few thousandths at most here.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_lifecycle.cli import app
from model_lifecycle.datasets.importer import export_dataset

ROOT = Path(__file__).resolve().parents[2]
pycocotools = pytest.importorskip("pycocotools")


def test_eval_results_score_the_same_map50_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from simulator.dataset import write_dataset

    # novel package looks: the shipped model misses some (mAP ~0.95), so the curves are not trivial
    write_dataset(tmp_path / "ds", 8, seed=77, drift="new_packages")
    export_dataset("coco", tmp_path / "ds", tmp_path / "coco")
    args = ["eval", str(ROOT / "models" / "default"), "--data", str(tmp_path / "ds"), "--json"]
    result = CliRunner().invoke(app, [*args, "--coco-results", str(tmp_path / "results.json")])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "annotations.json"))
        coco_eval = COCOeval(gt, gt.loadRes(str(tmp_path / "results.json")), "bbox")
        coco_eval.params.useCats = 0  # class-agnostic, like our map50
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    theirs = float(coco_eval.stats[1])  # AP at IoU 0.5, all areas, 100 detections per image

    assert ours["frames"] == 8 and ours["packages"] == len(gt.getAnnIds())
    assert abs(ours["map50"] - theirs) <= 0.005, (ours["map50"], theirs)
