"""Pascal VOC XML (LabelImg / CVAT) into the project's dataset layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_lifecycle.datasets.base import ConditionRules, ImportFailed, ImportOptions
from model_lifecycle.datasets.importer import import_dataset

from .conftest import records

CVAT_OBJECT = """<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>
<object><name>parcel</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>60</ymax></bndbox>
<attributes><attribute><name>condition</name><value>torn</value></attribute></attributes></object>
<object><name>parcel_open</name><track_id>3</track_id>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>pallet</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
</annotation>"""


def voc_folder(photos: Path, root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for name in ("wide.jpg", "tall.png"):
        (root / "JPEGImages" / name).write_bytes((photos / name).read_bytes())
    (root / "Annotations" / "wide.xml").write_text(CVAT_OBJECT.format(name="wide.jpg", w=200, h=120))
    (root / "Annotations" / "tall.xml").write_text(CVAT_OBJECT.format(name="tall.png", w=90, h=160))
    return root


def test_voc_objects_attributes_and_one_based_corners(photos: Path, tmp_path: Path) -> None:
    src = voc_folder(photos, tmp_path / "voc")
    opts = ImportOptions(ConditionRules({"pallet": "ignore"}))
    report = import_dataset("voc", src, tmp_path / "ds", opts)

    recs = {r["source"]["key"]: r for r in records(tmp_path / "ds")}
    wide = recs["wide.jpg"]["packages"]
    assert [p["box"] for p in wide] == [[10, 20, 60, 60], [0, 0, 30, 40]]
    assert [p["condition"] for p in wide] == ["torn", "open"] and wide[1]["package_id"] == "3"
    assert report.counts["ignored_box"] == 2


def test_a_broken_xml_file_is_named_with_its_line(photos: Path, tmp_path: Path) -> None:
    src = voc_folder(photos, tmp_path / "voc")
    (src / "Annotations" / "tall.xml").write_text("<annotation>\n<filename>tall.png</filename>\n<object>\n")
    with pytest.raises(ImportFailed) as failed:
        import_dataset("voc", src, tmp_path / "ds", ImportOptions(ConditionRules({"pallet": "ignore"})))
    first = failed.value.report.errors[0]
    assert (Path(first.file).name, first.where, first.kind) == ("tall.xml", "line 4", "parse_error")
