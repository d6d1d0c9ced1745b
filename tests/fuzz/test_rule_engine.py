"""Property-based fuzzing of the anomaly rule engine (`realtime/rules`): for any valid rule set,
any facts (including NaN, missing and out-of-order values) and any evaluation interval, it never
raises; every flag it raises falls due inside the interval, is complete and fits the
``anomaly_flags`` constraints (rule flags are stored as they are, no validator sees them), and
splitting the interval in two yields exactly the same flags (evaluations may overlap or repeat without duplicates).
A rule file of any shape either loads or fails with a ConfigError naming WV_RULES_FILE.

Derandomized; 1,800 cases (with tests/fuzz/test_event_decoder.py, 10,450 per run).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.events import SEVERITY_NAME
from foundation.settings import ConfigError
from realtime.rules.config import MAX_WAIT_S, RuleSet, parse_rules
from realtime.rules.engine import evaluate
from realtime.rules.facts import Decision, Facts, Sighting, Zone
from realtime.windows.model import Counts
from tests.realtime.rules.test_engine import conveyor_minutes

FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FACILITIES = ("FAC-001", "FAC-002")
ZONES = ("inbound", "sorter", "hold", "outbound", "")

moments = st.builds(
    lambda s, us: T0 + timedelta(seconds=s, microseconds=us),
    st.integers(-6 * 3600, 6 * 3600),
    st.integers(0, 999_999),
)
odd_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 0.6, 1.0, 1000.0])
)
names = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z")
TYPED_VALUES = {
    "number": odd_floats,
    "text": st.one_of(st.sampled_from(["ok", "torn", "hold", "cam-1", ""]), st.text(max_size=5)),
    "boolean": st.booleans(),
}
FIELDS = {
    "condition": "text",
    "zone": "text",
    "expected_zone": "text",
    "camera_id": "text",
    "condition_confidence": "number",
    "detection_confidence": "number",
    "end_to_end_ms": "number",
    "fallback": "boolean",
    "misplaced": "boolean",
}


@st.composite
def predicates(draw) -> dict:
    """A well-typed predicate (the rule file refuses others: see the rule-file test)."""
    field = draw(st.sampled_from(sorted(FIELDS)))
    holds = FIELDS[field]
    ops = ["==", "!="] + (["<", "<=", ">", ">="] if holds == "number" else [])
    ops += ["in", "not_in"] if holds != "boolean" else []
    op = draw(st.sampled_from(ops))
    typed = TYPED_VALUES[holds]
    value = draw(st.lists(typed, max_size=3)) if op in ("in", "not_in") else draw(typed)
    return {"field": field, "op": op, "value": value}


def _common(draw) -> dict:
    rule = {
        "name": draw(names),
        "kind": draw(names),
        "severity": draw(st.sampled_from(["info", "warning", "critical"])),
    }
    if draw(st.booleans()):
        rule["facilities"] = draw(st.lists(st.sampled_from([*FACILITIES, "FAC-999"]), max_size=2))
    return rule


@st.composite
def rules(draw) -> dict:
    kind = draw(st.sampled_from(["threshold", "rate", "dwell", "lost"]))
    rule = {**_common(draw), "type": kind}
    positive = st.floats(min_value=1e-3, max_value=MAX_WAIT_S)
    if kind == "threshold":
        rule["when"] = draw(st.lists(predicates(), min_size=1, max_size=3))
    elif kind == "rate":
        rule |= {
            "metric": draw(st.sampled_from(["damage_rate", "misplacement_rate", "fallback_rate"])),
            "group_by": draw(st.sampled_from(["zone", "camera_id"])),
            "window_minutes": draw(st.sampled_from([1, 5, 15, 60, 1440])),
            "factor": draw(st.floats(min_value=1.001, max_value=1e6)),
            "min_packages": draw(st.integers(1, 5)),
            "min_baseline_rate": draw(st.floats(min_value=1e-6, max_value=1.0)),
        }
        if draw(st.booleans()):
            rule["critical_factor"] = draw(st.floats(min_value=1.001, max_value=1e6))
    elif kind == "dwell":
        if draw(st.booleans()):
            rule["zones"] = draw(st.lists(st.sampled_from(ZONES), max_size=2))
        if draw(st.booleans()):
            rule["max_dwell_s"] = draw(positive)
    else:
        rule["within_s"] = draw(positive)
        if draw(st.booleans()):
            rule["from_zones"] = draw(st.lists(st.sampled_from(ZONES), max_size=2))
        if draw(st.booleans()):
            rule["next_zone"] = draw(st.sampled_from(ZONES))
    return rule


@st.composite
def rule_sets(draw) -> RuleSet:
    found = draw(st.lists(rules(), min_size=1, max_size=4, unique_by=lambda r: r["name"]))
    return RuleSet.model_validate({"rules": found})


decisions = st.builds(
    Decision,
    # Decisions are read back from PostgreSQL, whose text columns cannot hold NUL.
    event_id=st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=8),
    facility_id=st.sampled_from(FACILITIES),
    camera_id=st.sampled_from(["cam-1", "cam-2", ""]),
    package_id=st.sampled_from(["P1", "P2", "P3", ""]),
    zone=st.sampled_from(ZONES),
    expected_zone=st.sampled_from(ZONES),
    condition=st.sampled_from(["ok", "ok", "crushed", "torn", "wet", "open"]),
    condition_confidence=odd_floats,
    detection_confidence=odd_floats,
    fallback=st.booleans(),
    end_to_end_ms=st.one_of(st.none(), odd_floats),
    event_time=moments,
)
sightings = st.builds(
    Sighting,
    facility_id=st.sampled_from(FACILITIES),
    package_id=st.sampled_from(["P1", "P2", "P3"]),
    zone=st.sampled_from(ZONES),
    time=moments,
    first_seen=st.one_of(st.none(), moments),
)


@st.composite
def facts(draw) -> Facts:
    zones = {
        (f, z): Zone(
            f,
            z,
            draw(st.sampled_from(["lane", "holding", "sorter"])),
            draw(st.one_of(st.none(), st.sampled_from(ZONES))),
            draw(st.one_of(st.none(), st.floats(min_value=1.0, max_value=2**31 - 1))),  # an int4 column
        )
        for f in FACILITIES
        for z in draw(st.lists(st.sampled_from(ZONES), max_size=4, unique=True))
    }
    baselines = {
        (draw(names), f, draw(st.sampled_from(ZONES)), draw(moments).date().isoformat()): Counts(
            *(draw(st.integers(0, 50)) for _ in range(4))
        )
        for f in draw(st.lists(st.sampled_from(FACILITIES), max_size=2))
    }
    decided = draw(st.lists(decisions, max_size=15))
    return Facts(
        decisions=tuple(decided),
        conveyor_minutes=conveyor_minutes(decided),  # what the windows hold of them
        sightings=tuple(draw(st.lists(sightings, max_size=15))),
        zones=zones,
        baselines=baselines,
    )


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON (PostgreSQL's jsonb refuses it)")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.timeout(900)  # 1,200 cases x 4 evaluations: minutes on a loaded 2-core machine
@settings(FUZZ, max_examples=1200)
@given(rule_sets(), facts(), moments, st.integers(0, 4 * 3600), st.integers(0, 4 * 3600))
def test_rules_never_raise_and_flag_exactly_once_inside_the_interval(ruleset, facts_, since, length, cut):
    now = since + timedelta(seconds=length)
    flags = evaluate(ruleset, facts_, since, now)
    kinds = {r.kind for r in ruleset.rules}
    for flag in flags:
        at = flag.flagged_at.seconds + flag.flagged_at.nanos * 1e-9
        assert since.timestamp() < at <= now.timestamp() + 1e-6
        assert flag.kind in kinds and flag.source.startswith("rule:")
        assert isinstance(_strict_json(flag.evidence_json), dict)
        # stored as they are (no validator sees them): complete, and fitting anomaly_flags' constraints
        assert flag.anomaly_id and flag.facility_id in FACILITIES and flag.HasField("flagged_at")
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,63}", flag.kind) and flag.severity in SEVERITY_NAME
        assert math.isfinite(flag.score)
    ids = [f.anomaly_id for f in flags]
    assert [f.anomaly_id for f in evaluate(ruleset, facts_, since, now)] == ids  # deterministic
    mid = since + timedelta(seconds=min(cut, length))
    halves = [
        f.anomaly_id for f in evaluate(ruleset, facts_, since, mid) + evaluate(ruleset, facts_, mid, now)
    ]
    assert sorted(halves) == sorted(ids)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), odd_floats, st.integers(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def rule_documents(draw) -> str:
    """YAML of any shape: rule-like mappings with wrong fields or values, random structures, junk."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        rule = draw(rules())
        for key in draw(st.lists(st.sampled_from([*rule, "extra", "type"]), max_size=2)):
            rule[key] = draw(yaml_values)
        return yaml.safe_dump({"rules": [rule]})
    if choice == 1:
        return yaml.safe_dump(draw(yaml_values))
    return draw(st.text(max_size=80))


@settings(FUZZ, max_examples=600)
@given(rule_documents())
def test_any_rule_file_loads_or_fails_with_a_clear_config_error(text: str) -> None:
    try:
        ruleset = parse_rules(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("WV_RULES_FILE: fuzz.yaml")
    else:
        assert all(math.isfinite(getattr(r, "factor", 1.0)) for r in ruleset.rules)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("{type: threshold, when: [{field: condition, op: '<', value: 0.5}]}", "compares numbers"),
        ("{type: threshold, when: [{field: condition_confidence, op: '==', value: low}]}", "holds number"),
        ("{type: lost, within_s: 1.0e+12}", "less than or equal"),
        ("{type: dwell, max_dwell_s: 1.0e+12}", "less than or equal"),
    ],
)
def test_rules_the_engine_could_not_evaluate_are_refused_when_the_file_loads(rule: str, problem: str) -> None:
    """Cases the fuzzer found: they used to load, then fail every evaluation (TypeError, OverflowError)."""
    with pytest.raises(ConfigError, match=problem):
        parse_rules(f"rules:\n  - {{name: r, kind: r, {rule[1:]}\n", "bad.yaml")
