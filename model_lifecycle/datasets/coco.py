"""COCO detection JSON: import (CVAT, Roboflow, Label Studio's COCO export …), export, and results.

Import reads `images` (id, file_name, width, height), `annotations` (id, image_id, category_id,
bbox [x, y, w, h] in pixels, optional `attributes` {name: value} as CVAT writes them, optional
`track_id`) and `categories` (id, name). Images are found beside the JSON file, in `images/` there
or one level up (`annotations/instances_*.json` layouts), or under `--images`.

Export writes `annotations.json` + `images/`: image ids 1..N in dataset order (`image_id`), one
category per condition named `package_<condition>` (ids 1..5 in `CONDITIONS` order), and the
condition, package id and type as per-box `attributes`, so an export imports back unchanged.
`results()` writes detections in the COCO results format (`pycocotools` `loadRes`).
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from contract.frames import Detection
from contract.vocabulary import CONDITIONS
from model_lifecycle.datasets.base import ImportOptions, Report, SourceBox, SourceImage, find_image

CATEGORY_IDS = {c: i + 1 for i, c in enumerate(CONDITIONS)}


def image_id(index: int) -> int:
    """COCO image id of dataset record `index` (exports and results agree on it)."""
    return index + 1


def category_name(condition: str) -> str:
    return f"package_{condition}"


def _annotation_file(source: Path) -> Path:
    if source.is_file():
        return source
    for name in ("annotations.json", "_annotations.coco.json", "instances_default.json"):
        if (source / name).is_file():
            return source / name
    found = sorted(source.glob("*.json")) or sorted(source.glob("annotations/*.json"))
    if len(found) != 1:
        raise FileNotFoundError(f"{source}: expected one COCO .json file, found {[p.name for p in found]}")
    return found[0]


class CocoFormat:
    name: ClassVar[str] = "coco"

    def read(self, source: Path, options: ImportOptions, report: Report) -> Iterator[SourceImage]:
        path = _annotation_file(Path(source))
        file = str(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            report.error("parse_error", file, f"line {exc.lineno}", f"invalid JSON: {exc.msg}")
            return
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            report.error("parse_error", file, "top level", "not a COCO detection file (no 'images' list)")
            return
        categories: dict[Any, str] = {}
        for cat in data.get("categories", []):
            if cat.get("id") in categories:
                report.error("duplicate_id", file, f"category id {cat.get('id')}", "category id used twice")
            categories[cat.get("id")] = str(cat.get("name"))
        by_image: dict[Any, list[SourceBox]] = defaultdict(list)
        image_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
        seen_ann: set[Any] = set()
        for ann in data.get("annotations", []):
            where = f"annotation id {ann.get('id')}"
            if ann.get("id") in seen_ann:
                report.error("duplicate_id", file, where, "annotation id used twice")
                continue
            seen_ann.add(ann.get("id"))
            if ann.get("image_id") not in image_ids:
                report.error(
                    "unknown_image", file, where, f"image_id {ann.get('image_id')} is not in 'images'"
                )
                continue
            if ann.get("category_id") not in categories:
                report.error(
                    "unknown_class",
                    file,
                    where,
                    f"category_id {ann.get('category_id')} is not in 'categories'",
                )
                continue
            bbox = ann.get("bbox")
            if not (
                isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)
            ):
                report.error("parse_error", file, where, f"bbox must be [x, y, width, height], got {bbox!r}")
                continue
            if ann.get("iscrowd"):
                report.note(
                    "crowd_skipped", file, where, "crowd region (iscrowd 1) is not a package; skipped"
                )
                continue
            attrs = {str(k): str(v) for k, v in (ann.get("attributes") or {}).items()}
            track = attrs.get("package_id") or attrs.get("track_id") or ann.get("track_id")
            x, y, w, h = (float(v) for v in bbox)
            by_image[ann["image_id"]].append(
                SourceBox(x, y, x + w, y + h, categories[ann["category_id"]], where, attrs,
                          None if track is None else str(track))
            )  # fmt: skip
        roots = [r for r in (options.images, path.parent, path.parent / "images", path.parent.parent / "images",
                             path.parent.parent) if r is not None]  # fmt: skip
        for img in data["images"]:
            if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
                report.error("parse_error", file, f"image {img!r:.60}", "an image needs 'id' and 'file_name'")
                continue
            name = str(img["file_name"])
            yield SourceImage(
                key=str(img["id"]),
                file=file,
                where=f"image id {img['id']} ({name})",
                path=find_image(name, roots),
                boxes=by_image.get(img["id"], []),
                width=img.get("width"),
                height=img.get("height"),
            )

    def write(self, dataset: Path, out: Path, val_fraction: float = 0.0) -> dict[str, Any]:
        from simulator.dataset import ImageDataset

        ds = ImageDataset(dataset)
        (out / "images").mkdir()
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for i, rec in enumerate(ds.records):
            name = Path(rec["file"]).name
            shutil.copyfile(ds.path / rec["file"], out / "images" / name)
            images.append(
                {
                    "id": image_id(i),
                    "file_name": f"images/{name}",
                    "width": rec["width"],
                    "height": rec["height"],
                }
            )
            for p in rec["packages"]:
                x1, y1, x2, y2 = p["box"]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id(i),
                        "category_id": CATEGORY_IDS[p["condition"]],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                        "attributes": {
                            "condition": p["condition"],
                            "package_id": p["package_id"],
                            "package_type": p["package_type"],
                        },
                    }
                )
        categories = [
            {"id": i, "name": category_name(c), "supercategory": "package"} for c, i in CATEGORY_IDS.items()
        ]
        doc = {"info": {"description": f"exported from {dataset}"}, "images": images,
               "annotations": annotations, "categories": categories}  # fmt: skip
        (out / "annotations.json").write_text(json.dumps(doc))
        return {"images": len(images), "annotations": len(annotations), "file": "annotations.json"}


def results(
    detections: Sequence[Sequence[Detection]], ids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Detections per frame -> COCO results entries (`category_id` = the arg-max condition's)."""
    out = []
    for i, dets in enumerate(detections):
        for d in dets:
            b = d.box
            out.append(
                {
                    "image_id": ids[i] if ids is not None else image_id(i),
                    "category_id": CATEGORY_IDS[d.condition],
                    "bbox": [round(b.x1, 2), round(b.y1, 2), round(b.x2 - b.x1, 2), round(b.y2 - b.y1, 2)],
                    "score": round(float(d.score), 5),
                }
            )
    return out
