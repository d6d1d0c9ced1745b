"""Validation split by package: a package (or track) never lands on both sides."""

from __future__ import annotations

from model_lifecycle.datasets.split import split_by_package


def _rec(i: int, *ids: str) -> dict:
    return {"file": f"{i}.jpg", "packages": [{"package_id": p} for p in ids]}


def test_frames_sharing_a_track_stay_together_and_the_split_is_stable() -> None:
    recs = [_rec(i, f"track-{i // 5}", f"solo-{i}") for i in range(100)] + [_rec(100)]
    train, val = split_by_package(recs, 0.3)
    assert sorted(train + val) == list(range(101)) and val and train
    side = {i: "val" if i in set(val) else "train" for i in range(101)}
    for t in range(20):
        assert len({side[i] for i in range(5 * t, 5 * t + 5)}) == 1
    assert split_by_package(list(reversed(recs)), 0.3)[1] == sorted(100 - i for i in val)


def test_a_tiny_dataset_still_gets_one_validation_group() -> None:
    train, val = split_by_package([_rec(0, "a"), _rec(1, "b")], 0.01)
    assert len(train) == 1 and len(val) == 1
