"""The production pointer: what the registry writes is what the edge reads, never half a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.model_pointer import PointerError, pointer_file, read_pointer, write_pointer


def test_a_written_pointer_reads_back_with_its_previous_version(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    file = pointer_file(tmp_path)

    write_pointer(file, "v2", tmp_path / "v2", previous="v1", approved_by="ana")
    pointer = read_pointer(file)

    assert pointer is not None
    assert (pointer.version, pointer.path, pointer.previous) == ("v2", (tmp_path / "v2").resolve(), "v1")
    assert pointer.previous_path == tmp_path / "v1" and pointer.approved_by == "ana"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["production.json"]  # no temp file left


def test_no_file_means_no_approved_model_yet(tmp_path: Path) -> None:
    assert read_pointer(pointer_file(tmp_path)) is None


@pytest.mark.parametrize(
    ("content", "message"), [("{not json", "unreadable"), ('{"path": "/x"}', "without a version")]
)
def test_a_damaged_pointer_is_named_with_the_problem(tmp_path: Path, content: str, message: str) -> None:
    file = pointer_file(tmp_path)
    file.write_text(content)

    with pytest.raises(PointerError, match=message) as error:
        read_pointer(file)
    assert str(file) in str(error.value)
