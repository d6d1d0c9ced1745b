"""Facility shards: which database holds each facility's events (``WV_SHARD_MAP``).

The file names further databases and the facilities they hold::

    shards:                    # name: URL (a Patroni cluster: a multi-host URL, read-write)
      east: postgresql://wv@db-east:5432/warehouse_vision
    facilities:                # facility: shard; a facility not listed lives on the home shard
      FAC-03: east

The *home* shard is ``WV_DATABASE_URL``. It is the catalogue: facilities, zones and cameras are
registered there first and mirrored to every other shard (``wv db upgrade``, ``wv db cameras
add``), so each shard's foreign keys and analytics joins stay local and the validator reads one
registry. It also keeps what is not per facility: the model registry, the Dagster storage's
default, the dead letters of events that named no known facility. Unset, there is one shard,
the single database of before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from foundation.settings import ConfigError, DatabaseSettings, check_postgres_url

HOME = "home"
"""The shard ``WV_DATABASE_URL`` names; it cannot be redefined in the file."""
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class ShardMap:
    """Shard name → database URL (home first) and facility → shard name."""

    urls: Mapping[str, str]
    facilities: Mapping[str, str]

    @classmethod
    def single(cls, url: str) -> ShardMap:
        """Every facility in one database (the default)."""
        return cls({HOME: url}, {})

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> ShardMap:
        """The map ``WV_SHARD_MAP`` describes around ``WV_DATABASE_URL`` (one shard when unset)."""
        if settings.shard_map is None:
            return cls.single(settings.database_url)
        return cls.load(settings.shard_map, settings.database_url)

    @classmethod
    def load(cls, path: Path, home_url: str) -> ShardMap:
        """Parse ``path``; a mistake is a :class:`ConfigError` naming the file and line."""
        try:
            root = yaml.compose(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"WV_SHARD_MAP={path}: {exc}") from None
        sections = _mapping(root, path, "the file")
        unknown = sorted(set(sections) - {"shards", "facilities"})
        if unknown:
            key, _ = sections[unknown[0]]
            raise _error(path, key, f"unknown section {unknown[0]!r} (expected shards, facilities)")
        urls = {HOME: home_url}
        for name, (key, value) in _mapping(sections.get("shards", (None, None))[1], path, "shards").items():
            if not _NAME.fullmatch(name) or name == HOME:
                raise _error(
                    path, key, f"shard name {name!r}: lowercase letters, digits, '_', '-' (not 'home')"
                )
            try:
                urls[name] = check_postgres_url(_scalar(value, path))
            except ValueError as exc:
                raise _error(path, value, f"shard {name}: {exc}") from None
        facilities = {}
        for facility, (_key, value) in _mapping(
            sections.get("facilities", (None, None))[1], path, "facilities"
        ).items():
            shard = _scalar(value, path)
            if shard not in urls:
                raise _error(
                    path, value, f"facility {facility}: unknown shard {shard!r} (known: {sorted(urls)})"
                )
            facilities[facility] = shard
        return cls(urls, facilities)

    @property
    def names(self) -> list[str]:
        """Shard names, home first."""
        return list(self.urls)

    @property
    def home_url(self) -> str:
        return self.urls[HOME]

    @property
    def sharded(self) -> bool:
        return len(self.urls) > 1

    def shard_of(self, facility_id: str) -> str:
        """The shard holding ``facility_id``'s events (home for any facility the file does not list)."""
        return self.facilities.get(facility_id, HOME)

    def url_of(self, facility_id: str) -> str:
        return self.urls[self.shard_of(facility_id)]

    def by_shard(self, facility_ids: Iterable[str]) -> dict[str, list[str]]:
        """``facility_ids`` grouped by shard, in the order given (shards without any left out)."""
        groups: dict[str, list[str]] = {}
        for facility in facility_ids:
            groups.setdefault(self.shard_of(facility), []).append(facility)
        return groups


_Pairs = dict[str, tuple[yaml.Node, yaml.Node]]


def _mapping(node: yaml.Node | None, path: Path, what: str) -> _Pairs:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise _error(path, node, f"{what}: expected a mapping")
    return {_scalar(key, path): (key, value) for key, value in node.value}


def _scalar(node: yaml.Node, path: Path) -> str:
    if not isinstance(node, yaml.ScalarNode) or not node.value:
        raise _error(path, node, "expected a non-empty text value")
    return str(node.value)


def _error(path: Path, node: yaml.Node, message: str) -> ConfigError:
    return ConfigError(f"WV_SHARD_MAP={path}, line {node.start_mark.line + 1}: {message}")
