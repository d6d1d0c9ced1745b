"""The README's configuration table, generated from every tier's settings model and edge.yaml.

One row per ``WV_`` variable: its default, the tiers that read it (``wv.settings.TIER_SETTINGS``,
plus the ``edge.yaml`` options whose fleet-wide default it sets) and its description.
``python -m wv.settings_doc`` prints it; ``--write README.md`` replaces the table between the
markers; ``--check README.md`` exits 1 when the README is stale (a test runs the same check).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from datetime import date
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from edge.config import EdgeConfig
from foundation.settings import ENV_PREFIX, env_fields
from wv.settings import TIER_SETTINGS, PlatformSettings

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"


def _choices(annotation: object) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [c for arg in typing.get_args(annotation) for c in _choices(arg)]
    return []


def _default(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, list | frozenset):
        value = ",".join(str(v) for v in (value if isinstance(value, list) else sorted(value)))
        if not value:
            return "(none)"
    if isinstance(value, date | Path):
        value = str(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _field(model: type[BaseModel], path: tuple[str, ...]) -> FieldInfo:
    for part in path[:-1]:
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    return model.model_fields[path[-1]]


def _row(variable: str, info: FieldInfo, readers: str, default: str | None = None) -> str:
    description = info.description or ""
    choices = _choices(info.annotation)
    if choices:
        description += f" One of: {', '.join(f'`{c}`' for c in choices)}."
    return f"| `{variable}` | {_cell(default or _default(info))} | {readers} | {_cell(description)} |"


def _tier_defaults(name: str) -> str | None:
    """``"`9464` (edge), `9465` (centre)"`` when the tiers reading `name` default it differently."""
    defaults = {
        tier: _default(model.model_fields[name])
        for tier, model in TIER_SETTINGS.items()
        if name in model.model_fields
    }
    if len(set(defaults.values())) < 2:
        return None
    return ", ".join(f"{value} ({tier})" for tier, value in defaults.items())


def _in_section_order() -> list[tuple[str, FieldInfo]]:
    """Fields grouped by the class that declares them: shared sections first, then each tier's own."""
    fields = PlatformSettings.model_fields
    order = [
        name
        for cls in reversed(PlatformSettings.__mro__)
        for name in vars(cls).get("__annotations__", {})
        if name in fields
    ]
    return [(name, fields[name]) for name in dict.fromkeys(order)]


def table() -> str:
    """A Markdown table: one row per variable, settings in declaration order, then edge.yaml defaults."""
    rows = ["| Variable | Default | Read by | Description |", "| --- | --- | --- | --- |"]
    readers = {
        name: [tier for tier, model in TIER_SETTINGS.items() if name in model.model_fields]
        for name in PlatformSettings.model_fields
    }
    for name, info in sorted(_in_section_order(), key=lambda item: -len(readers[item[0]])):
        rows.append(_row(f"{ENV_PREFIX}{name.upper()}", info, ", ".join(readers[name]), _tier_defaults(name)))
    for path, variable in env_fields(EdgeConfig):
        rows.append(_row(variable, _field(EdgeConfig, path), f"edge (`edge.yaml` {'.'.join(path)})"))
    return "\n".join(rows) + "\n"


def embed(readme: str) -> str:
    """``readme`` with the generated table between the markers."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README lacks the markers {BEGIN!r} … {END!r}")
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="README", help="update the table in this file")
    group.add_argument("--check", type=Path, metavar="README", help="exit 1 when its table is stale")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(embed(args.write.read_text()))
    elif args.check:
        current = args.check.read_text()
        if embed(current) != current:
            fix = f"python -m wv.settings_doc --write {args.check}"
            print(f"{args.check}: configuration table is stale; run `{fix}`")
            return 1
    else:
        sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
