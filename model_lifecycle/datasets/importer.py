"""Import any format into the project's dataset layout, all or nothing; export to another format.

The layout is the one `wv data` writes and `model_lifecycle.sources.DirectoryFrames` reads:

    images/000000.jpg …   the original image files, copied byte for byte (any size, any aspect)
    annotations.jsonl     one record per image: file, width, height, camera_id, index, timestamp,
                          packages [{box (pixels x1 y1 x2 y2), package_id, sku, package_type,
                          condition, zone, expected_zone}], source {file, where, key, split}

A box's `package_id` is the source's track/package id when it has one, else
`img-<sha1 of the image file>#<n>`: the same photo imported twice (in one dataset, or in a
training and a validation set) carries the same ids, so the package split keeps it on one side
and `wv model train --val` can refuse a validation set that shares packages with the training set.
    dataset.json          format, source, options, counts and the import report (written last)

Everything is written to a hidden temporary folder beside the destination and renamed onto it
only when every image and box passed; on any error the folder is removed and `ImportFailed`
carries the report (each problem with its file and line/id, and the counts).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2

from model_lifecycle.datasets.base import (
    IGNORE,
    ImportFailed,
    ImportOptions,
    Report,
    SourceBox,
    SourceImage,
)

FORMAT = "wv-dataset/1"
EDGE_TOLERANCE_PX = 0.01
"""Boxes past the image edge by less than this (rounding in normalised formats) are clipped silently."""


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """A temporary folder beside `dest`, renamed onto it when the block ends without an exception."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; choose a new destination (imports never merge)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_image(img: SourceImage, report: Report) -> tuple[int, int] | None:
    """(width, height) of the image file, or None after reporting why it cannot be used."""
    if img.path is None or not img.path.is_file():
        report.error("missing_image", img.file, img.where, f"image file not found: {img.path or img.key}")
        return None
    pixels = cv2.imread(str(img.path), cv2.IMREAD_COLOR)
    if pixels is None:
        report.error("corrupt_image", img.file, img.where, f"cannot decode image {img.path}")
        return None
    h, w = pixels.shape[:2]
    if (img.width and img.width != w) or (img.height and img.height != h):
        report.error(
            "size_mismatch",
            img.file,
            img.where,
            f"declared {img.width}x{img.height} but {img.path.name} is {w}x{h} (rotated on export?)",
        )
        return None
    return w, h


def _check_box(
    box: SourceBox, img: SourceImage, size: tuple[int, int], opts: ImportOptions, report: Report
) -> list[float] | None:
    w, h = size
    sx, sy = (w, h) if img.normalized else (1, 1)
    x1, y1, x2, y2 = box.x1 * sx, box.y1 * sy, box.x2 * sx, box.y2 * sy
    where = f"{img.where}, {box.where}"
    if not all(map(_finite, (x1, y1, x2, y2))) or x2 <= x1 or y2 <= y1:
        report.error("empty_box", img.file, where, f"box {x1:g},{y1:g},{x2:g},{y2:g} has no area")
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
    outside = max(cx1 - x1, cy1 - y1, x2 - cx2, y2 - cy2)
    if outside > EDGE_TOLERANCE_PX:
        text = f"box {x1:.1f},{y1:.1f},{x2:.1f},{y2:.1f} reaches outside the {w}x{h} image"
        if cx2 <= cx1 or cy2 <= cy1:
            report.error("box_outside", img.file, where, text + " entirely")
            return None
        if opts.boxes == "refuse":
            report.error("box_outside", img.file, where, text + " (--boxes refuse)")
            return None
        report.note("box_clipped", img.file, where, text + "; clipped")
    return [round(v, 2) for v in (cx1, cy1, cx2, cy2)]


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def _packages(
    img: SourceImage, size: tuple[int, int], opts: ImportOptions, report: Report, image_id: str
) -> list[dict[str, Any]]:
    out = []
    for k, box in enumerate(img.boxes):
        condition, problem = opts.rules.resolve(box.label, box.attributes)
        where = f"{img.where}, {box.where}"
        if problem == "unknown_condition":
            value = box.attributes.get(opts.rules.attribute)
            report.error(
                problem, img.file, where, f"unknown condition {value!r} in attribute {opts.rules.attribute!r}"
            )
            continue
        if problem == "unknown_class":
            report.error(
                problem,
                img.file,
                where,
                f"class {box.label!r} names no condition and the box has no {opts.rules.attribute!r} "
                f"attribute: --map '{box.label}=ok|crushed|torn|wet|open|ignore' or --default-condition ok",
            )
            continue
        if condition == IGNORE:
            report.note("ignored_box", img.file, where, f"class {box.label!r} ignored (--map)")
            continue
        xyxy = _check_box(box, img, size, opts, report)
        if xyxy is None:
            continue
        out.append(
            {
                "box": xyxy,
                "package_id": box.package_id or f"{image_id}#{k}",
                "sku": "",
                "package_type": opts.rules.package_type(box.label),
                "condition": condition,
                "zone": "",
                "expected_zone": "",
            }
        )
    return out


def _guarded(images: Iterator[SourceImage] | Any, source: Path, report: Report) -> Iterator[SourceImage]:
    """The reader's images; a file shaped unlike its format (a reader error) becomes a report line."""
    iterator = iter(images)
    while True:
        try:
            img = next(iterator)
        except StopIteration:
            return
        except (FileNotFoundError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            report.error(
                "parse_error",
                str(source),
                "-",
                f"not a readable file of this format: {type(exc).__name__}: {exc}",
            )
            return
        yield img


def import_dataset(fmt: str, source: Path, dest: Path, options: ImportOptions | None = None) -> Report:
    """Read `source` in format `fmt` into a new dataset at `dest`; raises `ImportFailed` on any error."""
    from model_lifecycle.datasets import reader

    opts = options or ImportOptions()
    source, dest = Path(source), Path(dest)
    report = Report(fmt, str(source))
    if dest.exists():
        raise FileExistsError(f"{dest} exists; choose a new destination (imports never merge)")
    with staged_dir(dest) as tmp:
        (tmp / "images").mkdir()
        records: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        pixels: dict[str, str] = {}
        for img in _guarded(reader(fmt).read(source, opts, report), source, report):
            report.counts["images_read"] += 1
            if img.key in seen:
                report.error(
                    "duplicate_id",
                    img.file,
                    img.where,
                    f"image id {img.key!r} already used by {seen[img.key]}",
                )
                continue
            seen[img.key] = img.where
            size = _read_image(img, report)
            if size is None:
                continue
            assert img.path is not None
            data = img.path.read_bytes()
            image_id = "img-" + hashlib.sha1(data).hexdigest()[:16]
            if image_id in pixels:
                report.note("same_image", img.file, img.where, f"same file content as {pixels[image_id]}")
            pixels.setdefault(image_id, img.where)
            packages = _packages(img, size, opts, report, image_id)
            name = f"images/{len(records):06d}{img.path.suffix.lower()}"
            (tmp / name).write_bytes(data)
            records.append(
                {
                    "file": name,
                    "width": size[0],
                    "height": size[1],
                    "camera_id": img.camera_id or opts.camera_id,
                    "index": len(records),
                    "timestamp": 0.0,
                    "packages": packages,
                    "source": {"file": img.file, "where": img.where, "key": img.key, "split": img.split},
                }
            )
            report.counts["boxes_imported"] += len(packages)
        report.counts["images_imported"] = len(records)
        if not report.ok:
            raise ImportFailed(report)
        if not records:
            report.error("empty", str(source), "-", "no images found")
            raise ImportFailed(report)
        with (tmp / "annotations.jsonl").open("w") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
        conditions: dict[str, int] = {}
        for rec in records:
            for p in rec["packages"]:
                conditions[p["condition"]] = conditions.get(p["condition"], 0) + 1
        meta = {
            "format": FORMAT,
            "source": {"format": fmt, "path": str(source)},
            "options": {
                "mapping": dict(opts.rules.mapping),
                "attribute": opts.rules.attribute,
                "default_condition": opts.rules.default,
                "boxes": opts.boxes,
            },
            "counts": {
                "frames": len(records),
                "packages": sum(conditions.values()),
                "conditions": dict(sorted(conditions.items())),
            },
            "report": report.summary(),
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return report


def export_dataset(fmt: str, dataset: Path, dest: Path, val_fraction: float = 0.0) -> dict[str, Any]:
    """Write the project dataset `dataset` (simulator-made or imported) as `fmt` into a new `dest`."""
    from model_lifecycle.datasets import writer

    with staged_dir(Path(dest)) as tmp:
        return writer(fmt).write(Path(dataset), tmp, val_fraction)
