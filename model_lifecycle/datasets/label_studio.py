"""Label Studio exports: `JSON` (full) and `JSON_MIN`, rectangle labels plus a condition choice.

Full export: a list of tasks `{id, data: {image: URL}, annotations: [{result: [...]}]}`; each
`rectanglelabels` result has `value` {x, y, width, height} in percent of the image, `rotation`
(must be 0) and `original_width` / `original_height`. A `choices` result whose `id` equals a
rectangle's is that box's attribute (a per-region choice, `perRegion="true"`); one without a
matching rectangle applies to every box of the task. The attribute's name is the control's
`from_name` (`condition` by default, `--condition-attribute` otherwise). The last annotation that
was not cancelled counts. `JSON_MIN` tasks carry `image`, the rectangles under `label` and task-level
choices as plain keys.

Image URLs: `/data/local-files/?d=<path>` is looked up under `--images` (the Local Storage root),
`/data/upload/<project>/<hash>-<name>` as `upload/…` under `--images` (Label Studio's `media`
folder) or by its name; remote `http(s)://` images are refused
(download them first).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlparse

from model_lifecycle.datasets.base import ImportOptions, Report, SourceBox, SourceImage, find_image


def _local_names(url: str) -> list[str]:
    """Candidate relative file names for a Label Studio image URL."""
    parsed = urlparse(url)
    if "d" in parse_qs(parsed.query):
        return [unquote(parse_qs(parsed.query)["d"][0])]
    name = unquote(Path(parsed.path).name)
    path = unquote(parsed.path.lstrip("/"))
    names = [path, path.removeprefix("data/"), name]  # <media root>/upload/<project>/<file>
    head, sep, rest = name.partition("-")
    if sep and len(head) == 8 and all(c in "0123456789abcdef" for c in head):
        names.append(rest)  # uploads are stored as <8 hex>-<original name>
    return names


class LabelStudioFormat:
    name: ClassVar[str] = "label-studio"

    def read(self, source: Path, options: ImportOptions, report: Report) -> Iterator[SourceImage]:
        path = Path(source)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if len(found) != 1:
                raise FileNotFoundError(
                    f"{path}: expected one Label Studio .json export, found {[p.name for p in found]}"
                )
            path = found[0]
        file = str(path)
        try:
            tasks = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            report.error("parse_error", file, f"line {exc.lineno}", f"invalid JSON: {exc.msg}")
            return
        if not isinstance(tasks, list):
            report.error("parse_error", file, "top level", "a Label Studio export is a list of tasks")
            return
        roots = [r for r in (options.images, path.parent, path.parent / "images") if r is not None]
        for n, task in enumerate(tasks, start=1):
            if not isinstance(task, dict):
                report.error("parse_error", file, f"task #{n}", "a task must be an object")
                continue
            img = (
                self._full(task, n, file, roots, options, report)
                if "data" in task
                else self._min(task, n, file, roots, options, report)
            )
            if img is not None:
                yield img

    def _image(self, url: Any, key: str, file: str, roots: list[Path], report: Report) -> SourceImage | None:
        where = f"task {key}"
        if not isinstance(url, str):
            report.error("parse_error", file, where, "no image URL in the task data")
            return None
        if url.startswith(("http://", "https://")) and "/data/" not in url:
            report.error("missing_image", file, where, f"remote image {url}: download it and pass --images")
            return None
        path = next((p for name in _local_names(url) if (p := find_image(name, roots))), None)
        return SourceImage(key=key, file=file, where=f"{where} ({url})", path=path, normalized=True)

    def _rectangle(
        self, r: Mapping[str, Any], where: str, file: str, report: Report, img: SourceImage
    ) -> SourceBox | None:
        v = r.get("value", r)
        at = f"{img.where}, {where}"
        labels = v.get("rectanglelabels") or v.get("labels") or []
        if v.get("rotation"):
            report.error("rotated_box", file, at, f"rotated rectangle ({v['rotation']} deg) is not supported")
            return None
        try:
            x, y, w, h = (float(v[k]) / 100 for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            report.error("parse_error", file, at, "rectangle needs numeric x, y, width, height")
            return None
        if len(labels) != 1:
            report.error("unknown_class", file, at, f"rectangle needs exactly one label, has {labels}")
            return None
        return SourceBox(x, y, x + w, y + h, str(labels[0]), where)

    def _full(
        self,
        task: dict[str, Any],
        n: int,
        file: str,
        roots: list[Path],
        options: ImportOptions,
        report: Report,
    ) -> SourceImage | None:
        key = str(task.get("id", f"#{n}"))
        data = task.get("data") or {}
        url = data.get("image") or next((v for v in data.values() if isinstance(v, str)), None)
        img = self._image(url, key, file, roots, report)
        if img is None:
            return None
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if len(done) > 1:
            report.note(
                "multiple_annotations", file, f"task {key}", f"{len(done)} annotations; the last one is used"
            )
        results = done[-1].get("result", []) if done else []
        boxes: dict[str, SourceBox] = {}
        task_attrs: dict[str, str] = {}
        for r in results:
            kind = r.get("type")
            if kind == "rectanglelabels":
                box = self._rectangle(r, f"region {r.get('id')}", file, report, img)
                if box is not None:
                    boxes[str(r.get("id"))] = box
                    ow, oh = r.get("original_width"), r.get("original_height")
                    img.width, img.height = img.width or ow, img.height or oh
        for r in results:
            if r.get("type") in ("choices", "textarea"):
                values = r.get("value", {}).get("choices") or r.get("value", {}).get("text") or []
                if not values:
                    continue
                name = str(r.get("from_name", "choice"))
                target = boxes.get(str(r.get("id")))
                (target.attributes if target is not None else task_attrs)[name] = str(values[0])
        for box in boxes.values():
            box.attributes = {**task_attrs, **box.attributes}
        img.boxes = list(boxes.values())
        return img

    def _min(
        self,
        task: dict[str, Any],
        n: int,
        file: str,
        roots: list[Path],
        options: ImportOptions,
        report: Report,
    ) -> SourceImage | None:
        key = str(task.get("id", f"#{n}"))
        img = self._image(task.get("image"), key, file, roots, report)
        if img is None:
            return None
        value = task.get(options.rules.attribute)  # a task-level choice: a string, or a list of one
        value = value[0] if isinstance(value, list) and value else value
        task_attrs = {options.rules.attribute: str(value)} if isinstance(value, str) else {}
        for k, r in enumerate(task.get("label") or [], start=1):
            box = self._rectangle(r, f"label {k}", file, report, img)
            if box is not None:
                box.attributes = dict(task_attrs)
                img.boxes.append(box)
                img.width = img.width or r.get("original_width")
                img.height = img.height or r.get("original_height")
        return img
