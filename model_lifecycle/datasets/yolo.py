"""YOLO detection folders (Ultralytics / Roboflow / CVAT "YOLO 1.1"): `data.yaml` + images + labels.

Import reads `data.yaml` (`path`, `train` / `val` / `test` as folders, lists of folders or .txt
lists of image paths, `names` as a list or {index: name}); each image's labels are the .txt file
at the same path with the last `images/` replaced by `labels/` (or beside the image): one line
`class cx cy w h` per box, normalised to [0, 1]. A segmentation line (class x1 y1 x2 y2 …) becomes
the box around its polygon. YOLO has no attributes: conditions come from the class names.
An image without a label file has no packages (a valid background image).

Export writes `images/{train,val}/`, `labels/{train,val}/` (split by package) and `data.yaml`
with one class per condition named `package_<condition>`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import yaml

from contract.vocabulary import CONDITIONS
from model_lifecycle.datasets.base import ImportOptions, Report, SourceBox, SourceImage
from model_lifecycle.datasets.split import split_by_package

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")


def _yaml_file(source: Path) -> Path:
    if source.is_file():
        return source
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (source / name).is_file():
            return source / name
    raise FileNotFoundError(f"{source}: no data.yaml")


def label_path(image: Path) -> Path:
    parts = list(image.parts)
    if "images" in parts:
        k = len(parts) - 1 - parts[::-1].index("images")
        parts[k] = "labels"
    return Path(*parts).with_suffix(".txt")


def _images(entry: Path) -> list[Path]:
    if entry.is_file() and entry.suffix == ".txt":
        root = entry.parent
        lines = [ln.strip() for ln in entry.read_text().splitlines() if ln.strip()]
        return [p if (p := Path(ln)).is_absolute() else root / p for ln in lines]
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [entry]


class YoloFormat:
    name: ClassVar[str] = "yolo"

    def read(self, source: Path, options: ImportOptions, report: Report) -> Iterator[SourceImage]:
        yml = _yaml_file(Path(source))
        try:
            meta = yaml.safe_load(yml.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            report.error(
                "parse_error", str(yml), f"line {mark.line + 1 if mark else '?'}", f"invalid YAML: {exc}"
            )
            return
        names = meta.get("names")
        if isinstance(names, list):
            classes = {i: str(n) for i, n in enumerate(names)}
        elif isinstance(names, dict):
            classes = {int(k): str(v) for k, v in names.items()}
        else:
            report.error(
                "parse_error", str(yml), "names", "data.yaml needs 'names' (a list or {index: name})"
            )
            return
        root = Path(meta.get("path") or ".")
        root = root if root.is_absolute() else yml.parent / root
        read: set[Path] = set()
        for split in SPLITS:
            if options.split not in (None, split) or not meta.get(split):
                continue
            entries = meta[split] if isinstance(meta[split], list) else [meta[split]]
            for entry in entries:
                folder = root / str(entry)
                if not folder.exists():
                    report.error("missing_image", str(yml), split, f"{folder} does not exist")
                    continue
                if folder.resolve() in read:  # `val: images/train` when a tool wrote no validation split
                    report.note(
                        "split_repeated", str(yml), split, f"{entry} was already read as another split"
                    )
                    continue
                read.add(folder.resolve())
                for image in _images(folder):
                    yield self._image(image, root, classes, split, report)

    def _image(
        self, image: Path, root: Path, classes: dict[int, str], split: str, report: Report
    ) -> SourceImage:
        labels = label_path(image)
        if not labels.is_file() and image.with_suffix(".txt").is_file():
            labels = image.with_suffix(".txt")
        key = str(image.relative_to(root)) if image.is_relative_to(root) else str(image)
        img = SourceImage(
            key=key, file=str(labels), where=f"image {key}", path=image, normalized=True, split=split
        )
        if not labels.is_file():
            return img
        for n, line in enumerate(labels.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"line {n}"
            try:
                cls, values = int(fields[0]), [float(v) for v in fields[1:]]
            except ValueError:
                report.error("parse_error", str(labels), where, f"expected 'class cx cy w h', got {line!r}")
                continue
            if cls not in classes:
                report.error(
                    "unknown_class", str(labels), where, f"class index {cls} is not in data.yaml names"
                )
                continue
            if len(values) == 4:
                cx, cy, w, h = values
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            elif len(values) >= 6 and len(values) % 2 == 0:
                xs, ys = values[0::2], values[1::2]
                box = (min(xs), min(ys), max(xs), max(ys))
                report.note("polygon_as_box", str(labels), where, "segmentation polygon imported as its box")
            else:
                report.error("parse_error", str(labels), where, f"expected 'class cx cy w h', got {line!r}")
                continue
            img.boxes.append(SourceBox(*box, label=classes[cls], where=where))
        return img

    def write(self, dataset: Path, out: Path, val_fraction: float = 0.1) -> dict[str, Any]:
        from simulator.dataset import ImageDataset

        ds = ImageDataset(dataset)
        train, val = split_by_package(ds.records, val_fraction)
        counts = {}
        for split, indices in (("train", train), ("val", val)):
            (out / "images" / split).mkdir(parents=True)
            (out / "labels" / split).mkdir(parents=True)
            for i in indices:
                rec = ds.records[i]
                name = Path(rec["file"]).name
                shutil.copyfile(ds.path / rec["file"], out / "images" / split / name)
                w, h = rec["width"], rec["height"]
                lines = []
                for p in rec["packages"]:
                    x1, y1, x2, y2 = p["box"]
                    cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
                    lines.append(f"{CONDITIONS.index(p['condition'])} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
                (out / "labels" / split / name).with_suffix(".txt").write_text(
                    "".join(ln + "\n" for ln in lines)
                )
            counts[split] = len(indices)
        meta = {
            "path": ".",
            "train": "images/train",
            "val": "images/val" if val else "images/train",
            "names": {i: f"package_{c}" for i, c in enumerate(CONDITIONS)},
        }
        (out / "data.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        return {"images": counts, "file": "data.yaml"}
