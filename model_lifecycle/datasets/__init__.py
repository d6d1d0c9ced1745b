"""Labeled datasets in the formats labeling tools write, as plugins: one module per format.

| format         | import                                   | export            |
|----------------|------------------------------------------|-------------------|
| `coco`         | COCO detection JSON (CVAT, Roboflow …)   | JSON + images/    |
| `yolo`         | data.yaml + images/ + labels/*.txt       | same, split train/val by package |
| `voc`          | Pascal VOC XML (Annotations/ + JPEGImages/)   | —           |
| `label-studio` | Label Studio JSON export (rectangles + condition choice) | — |

A reader (`base.Reader`) yields `SourceImage`s; `importer.import_dataset` checks them the same way
for every format and writes the project layout. A writer (`base.Writer`) exports a project dataset.
Adding a format: one module with a class that has `name` and `read` (and/or `write`), listed below.
"""

from __future__ import annotations

import importlib

from model_lifecycle.datasets.base import Reader, Writer

READERS = {
    "coco": "model_lifecycle.datasets.coco:CocoFormat",
    "yolo": "model_lifecycle.datasets.yolo:YoloFormat",
    "voc": "model_lifecycle.datasets.voc:VocFormat",
    "label-studio": "model_lifecycle.datasets.label_studio:LabelStudioFormat",
}
WRITERS = {
    "coco": "model_lifecycle.datasets.coco:CocoFormat",
    "yolo": "model_lifecycle.datasets.yolo:YoloFormat",
}


def _load(table: dict[str, str], name: str, what: str) -> object:
    if name not in table:
        raise ValueError(f"no {what} for format {name!r}; choose one of {', '.join(table)}")
    module, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module), attr)()


def reader(name: str) -> Reader:
    return _load(READERS, name, "reader")  # type: ignore[return-value]


def writer(name: str) -> Writer:
    return _load(WRITERS, name, "writer")  # type: ignore[return-value]
