"""Pascal VOC XML (LabelImg, CVAT "PASCAL VOC 1.1", Roboflow): one .xml per image.

The source is a VOC folder (`Annotations/*.xml` with images in `JPEGImages/`, a split chosen by
`ImageSets/Main/<split>.txt`) or a folder of .xml files beside their images. Per file: `filename`,
`size/width`, `size/height`, and per `object`: `name`, `bndbox` (`xmin ymin xmax ymax`, the VOC
devkit's 1-based inclusive pixel indices: x1 = xmin - 1, x2 = xmax), and attributes as CVAT writes
them (`<attributes><attribute><name>condition</name><value>torn</value>…`) or as plain child
elements (`<condition>torn</condition>`, `<track_id>`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from model_lifecycle.datasets.base import ImportOptions, Report, SourceBox, SourceImage, find_image

_STANDARD = {"name", "bndbox", "pose", "truncated", "difficult", "occluded", "attributes", "part"}


def _text(node: ET.Element, path: str) -> str | None:
    found = node.find(path)
    return None if found is None or found.text is None else found.text.strip()


class VocFormat:
    name: ClassVar[str] = "voc"

    def read(self, source: Path, options: ImportOptions, report: Report) -> Iterator[SourceImage]:
        source = Path(source)
        ann_dir = source / "Annotations" if (source / "Annotations").is_dir() else source
        roots = [r for r in (options.images, source / "JPEGImages", ann_dir, source) if r is not None]
        files = sorted(ann_dir.glob("*.xml"))
        split_file = source / "ImageSets" / "Main" / f"{options.split}.txt"
        if options.split:
            if not split_file.is_file():
                report.error(
                    "missing_split", str(split_file), "-", f"no split {options.split!r} in this VOC folder"
                )
                return
            wanted = {ln.split()[0] for ln in split_file.read_text().splitlines() if ln.strip()}
            files = [f for f in files if f.stem in wanted]
        for xml in files:
            img = self._image(xml, roots, report)
            if img is not None:
                yield img

    def _image(self, xml: Path, roots: list[Path], report: Report) -> SourceImage | None:
        file = str(xml)
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            line, col = exc.position
            report.error("parse_error", file, f"line {line}", f"invalid XML (column {col}): {exc}")
            return None
        name = _text(root, "filename") or f"{xml.stem}.jpg"
        width, height = _text(root, "size/width"), _text(root, "size/height")
        img = SourceImage(
            key=name,
            file=file,
            where=f"image {name}",
            path=find_image(name, roots),
            width=int(float(width)) if width and float(width) > 0 else None,
            height=int(float(height)) if height and float(height) > 0 else None,
        )
        for n, obj in enumerate(root.iter("object"), start=1):
            label = _text(obj, "name") or ""
            where = f"object {n} ({label or 'no name'})"
            try:
                xmin, ymin, xmax, ymax = (
                    float(_text(obj, f"bndbox/{k}") or "nan") for k in ("xmin", "ymin", "xmax", "ymax")
                )
            except ValueError:
                report.error("parse_error", file, where, "bndbox needs numeric xmin, ymin, xmax, ymax")
                continue
            if xmin != xmin or ymax != ymax or xmax != xmax or ymin != ymin:
                report.error("parse_error", file, where, "bndbox needs xmin, ymin, xmax, ymax")
                continue
            attrs = {
                (_text(a, "name") or ""): (_text(a, "value") or "")
                for a in obj.findall("attributes/attribute")
            }
            attrs.update(
                {c.tag: (c.text or "").strip() for c in obj if c.tag not in _STANDARD and len(c) == 0}
            )
            track = attrs.get("package_id") or attrs.get("track_id")
            img.boxes.append(SourceBox(xmin - 1, ymin - 1, xmax, ymax, label, where, attrs, track or None))
        return img
