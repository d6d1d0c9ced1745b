"""How a box gets its condition: attribute first, then the class name, then the user's default."""

from __future__ import annotations

import pytest

from model_lifecycle.datasets.base import IGNORE, ConditionRules


def test_condition_from_class_names_attributes_and_mapping() -> None:
    rules = ConditionRules({"dented": "crushed", "forklift": IGNORE}, attribute="state")
    assert rules.resolve("parcel_crushed", {}) == ("crushed", None)
    assert rules.resolve("Box-Wet", {}) == ("wet", None)
    assert rules.resolve("torn", {}) == ("torn", None)
    assert rules.resolve("parcel", {"state": "dented"}) == ("crushed", None)
    assert rules.resolve("parcel_ok", {"state": "open"}) == ("open", None)  # the attribute wins
    assert rules.resolve("forklift", {}) == (IGNORE, None)
    assert rules.package_type("parcel_crushed") == "parcel"


def test_no_condition_is_ok_only_when_the_user_says_so() -> None:
    assert ConditionRules().resolve("parcel", {}) == (None, "unknown_class")
    assert ConditionRules(default="ok").resolve("parcel", {}) == ("ok", None)
    assert ConditionRules().resolve("parcel", {"condition": "squashed"}) == (None, "unknown_condition")


def test_a_mapping_to_an_unknown_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="squashed"):
        ConditionRules({"parcel": "squashed"})
