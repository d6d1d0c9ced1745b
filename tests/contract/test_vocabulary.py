"""The shared vocabulary and the proto say the same thing, in the same order."""

from __future__ import annotations

from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS, EVENT_KINDS, STAGES


def _enum_names(enum: object, prefix: str) -> tuple[str, ...]:
    return tuple(
        name.removeprefix(prefix).lower()
        for name, number in enum.items()  # type: ignore[attr-defined]
        if number
    )


def test_conditions_are_the_condition_enum_and_the_probability_fields_in_order() -> None:
    assert _enum_names(pb.Condition, "CONDITION_") == CONDITIONS
    assert tuple(f.name for f in pb.ConditionProbabilities.DESCRIPTOR.fields) == CONDITIONS


def test_stages_are_the_stage_timing_fields_in_order() -> None:
    assert tuple(f.name for f in pb.StageTimings.DESCRIPTOR.fields) == STAGES


def test_event_kinds_are_the_event_kind_enum() -> None:
    assert _enum_names(pb.EventKind, "EVENT_KIND_") == EVENT_KINDS
