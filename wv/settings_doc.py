"""The README's configuration table, generated from :class:`wv.settings.Settings`.

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

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from wv.settings import ENV_PREFIX, Settings

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
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, date | Path):
        value = str(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table() -> str:
    """A Markdown table: one row per setting, in declaration order."""
    rows = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        description = info.description or ""
        choices = _choices(info.annotation)
        if choices:
            description += f" One of: {', '.join(f'`{c}`' for c in choices)}."
        variable = f"`{ENV_PREFIX}{name.upper()}`"
        rows.append(f"| {variable} | {_cell(_default(info))} | {_cell(description)} |")
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
