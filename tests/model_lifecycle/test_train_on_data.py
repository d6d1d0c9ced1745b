"""`wv model train --data`: any dataset dir in, a complete model version out; fine-tuning a version
and training heads on a user-supplied backbone file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edge.model.config import BackboneConfig
from edge.model.version import load_detector, read_version
from edge.model.vit import VisionTransformer
from model_lifecycle.cli import app
from model_lifecycle.datasets.importer import export_dataset, import_dataset

FAST = ["--config", "fallback", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--no-wandb",
        "--no-progress", "--warmup-steps", "1", "--log-every", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight simulator frames that went out as COCO and came back in through `wv model import`."""
    from simulator.dataset import write_dataset

    root = tmp_path_factory.mktemp("data")
    write_dataset(root / "sim", 8, seed=3)
    export_dataset("coco", root / "sim", root / "coco")
    import_dataset("coco", root / "coco", root / "ds")
    return root / "ds"


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["train", *FAST, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_training_on_a_dataset_writes_a_complete_version_split_by_package(
    imported: Path, tmp_path: Path
) -> None:
    version = tmp_path / "v1"
    run("--data", str(imported), "--val-fraction", "0.3", "--steps", "2", "--input-size", "64x112",
        "--out", str(tmp_path / "run"), "--save-version", str(version))  # fmt: skip

    assert {p.name for p in version.iterdir()} >= {"weights.pt", "config.json", "metrics.json", "MODEL_CARD.md",
                                                   "model.onnx", "model.int8.onnx"}  # fmt: skip
    data = json.loads((version / "config.json").read_text())["training"]["options"]["data_description"]
    assert data["train"]["frames"] + data["validation"]["frames"] == 8 and data["validation"]["frames"] >= 1
    metrics = json.loads((version / "metrics.json").read_text())
    assert (
        metrics["eval_torch"]["frames"] == data["validation"]["frames"]
        and "condition_agreement" in metrics["parity"]
    )
    card = (version / "MODEL_CARD.md").read_text()
    assert str(imported) in card and "Validation (torch)" in card


def test_fine_tuning_a_version_on_new_data_with_a_frozen_backbone(imported: Path, tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    run("--data", str(imported), "--steps", "1", "--input-size", "64x112", "--out", str(tmp_path / "r0"),
        "--save-version", str(parent), "--no-export")  # fmt: skip
    child = tmp_path / "child"
    run("--data", str(imported), "--from-version", str(parent), "--freeze-backbone", "99", "--steps", "2",
        "--out", str(tmp_path / "r1"), "--save-version", str(child), "--no-export")  # fmt: skip

    a, b = load_detector(parent).state_dict(), load_detector(child).state_dict()
    assert read_version(child).config == read_version(parent).config
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("backbone."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("head."))


def test_heads_train_on_a_supplied_backbone_whose_origin_and_hash_the_card_records(
    imported: Path, tmp_path: Path
) -> None:
    cfg = BackboneConfig(embed_dim=64, depth=2, num_heads=1, patch_size=14, layerscale_init=1e-5)
    weights = VisionTransformer(cfg, (37, 37)).state_dict()
    torch.save({"model": weights}, tmp_path / "dinov2_tiny.pth")
    version = tmp_path / "v"
    run("--data", str(imported), "--backbone", str(tmp_path / "dinov2_tiny.pth"), "--freeze-backbone", "1",
        "--steps", "1", "--input-size", "64x112", "--out", str(tmp_path / "run"), "--save-version", str(version),
        "--no-export")  # fmt: skip

    frozen = load_detector(version).backbone.blocks[0].attn.qkv.weight
    torch.testing.assert_close(frozen, weights["blocks.0.attn.qkv.weight"], atol=1e-3, rtol=1e-3)  # fp16 file
    loaded = read_version(version).config
    assert (
        loaded.backbone.patch_size == 14
        and loaded.backbone.embed_dim == 64
        and loaded.input_size == (70, 112)
    )
    card = (version / "MODEL_CARD.md").read_text()
    assert "dinov2_tiny.pth" in card and "sha256 `" in card and "first 1 backbone blocks" in card


def test_a_validation_set_sharing_packages_with_the_training_set_is_refused(
    imported: Path, tmp_path: Path
) -> None:
    from model_lifecycle.datasets.importer import import_dataset as again

    again("coco", imported.parent / "coco", tmp_path / "same")  # the same photos, imported once more
    result = CliRunner().invoke(
        app, ["train", *FAST, "--data", str(imported), "--val", str(tmp_path / "same")]
    )
    assert result.exit_code == 2 and "packages are in both --data and --val" in result.output
