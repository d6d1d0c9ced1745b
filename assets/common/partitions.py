"""Partitions shared by every asset: facilities from configuration, days, weeks, and day × facility.

Facilities are static partitions read from ``WV_FACILITIES`` when the code location loads (the one
place the graph's shape comes from configuration), so adding a facility is a configuration change
plus a code-location reload.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from assets.common.settings import PipelineSettings

_settings = PipelineSettings.load()

START_DATE: str = _settings.partitions_start.isoformat()
"""First partition day (``WV_PARTITIONS_START``)."""

facility_partitions = dg.StaticPartitionsDefinition(list(_settings.facilities))
"""One partition per facility id (``WV_FACILITIES``)."""

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=0)
"""One partition per UTC day; the current day appears once it is over."""

weekly_partitions = dg.WeeklyPartitionsDefinition(start_date=START_DATE, timezone="UTC", day_offset=1)
"""One partition per ISO week (Monday to Sunday), keyed by its Monday."""

daily_facility_partitions = dg.MultiPartitionsDefinition(
    {"date": daily_partitions, "facility": facility_partitions}
)
"""Date × facility: the unit of verification, drift evaluation and facility analytics."""


def facility_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, date]:
    """(facility_id, day) of a date × facility partitioned run."""
    key = context.partition_key
    if not isinstance(key, dg.MultiPartitionKey):
        raise ValueError(f"expected a date × facility partition key, got {key!r}")
    dims = key.keys_by_dimension
    return dims["facility"], date.fromisoformat(dims["date"])


def week_start(context: dg.AssetExecutionContext) -> date:
    """Monday of a weekly partitioned run."""
    return date.fromisoformat(context.partition_key)
