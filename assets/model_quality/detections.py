"""``package_detections``: the time-series table the realtime ingest writes, seen from Dagster.

Dagster does not produce it, so it is an observable source asset: an observation records how
many decisions it holds and the newest event time, which is the data version downstream assets
are compared against, and it roots the lineage of the model-quality loop.
"""

import dagster as dg

from assets.common.resources import DatabaseResource
from assets.common.settings import PipelineSettings

OWNERS = ["team:realtime"]


@dg.observable_source_asset(
    key="package_detections",
    description=(
        "Detections and per-track decisions written by `wv realtime run` (Kafka → PostgreSQL, idempotent on "
        "event_id); partitioned by day in the database. Decisions joined with `quality_assessments` are what "
        "the model-quality loop samples, evaluates and mines for hard examples."
    ),
    group_name="realtime",
    tags={"domain": "realtime", "table": "package_detections"},
    metadata={"table": "public.package_detections", "writer": "realtime.ingest"},
)
def package_detections(database: DatabaseResource) -> dg.ObserveResult:
    """Row counts and the newest event over every shard; the data version changes whenever new
    decisions land."""
    decisions, rows, newest, facilities = 0, 0, None, 0
    for shard in database.shards().names:  # a facility lives on one shard: its counts add up
        with database.connect(shard=shard) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE kind = 'decision'), count(*), max(event_time), "
                "count(DISTINCT facility_id) FROM package_detections"
            ).fetchone()
        if row is not None:
            decisions, rows, facilities = decisions + row[0], rows + row[1], facilities + row[3]
            newest = max((t for t in (newest, row[2]) if t is not None), default=None)
    return dg.ObserveResult(
        data_version=dg.DataVersion(f"{rows}:{newest.isoformat() if newest else '-'}"),
        metadata={
            "rows": dg.MetadataValue.int(int(rows)),
            "decisions": dg.MetadataValue.int(int(decisions)),
            "facilities": dg.MetadataValue.int(int(facilities)),
            "newest_event": dg.MetadataValue.text(newest.isoformat() if newest else "none"),
        },
    )


_RECENT = """
WITH newest AS (SELECT max(event_time) AS t FROM package_detections)
SELECT d.event_id, d.kind, d.facility_id, d.detection_confidence, d.x1, d.y1, d.x2, d.y2, d.model_version,
       d.end_to_end_ms, q.condition
FROM package_detections d
LEFT JOIN quality_assessments q ON q.event_time = d.event_time AND q.event_id = d.event_id
WHERE d.event_time > (SELECT t FROM newest) - interval '1 day'
ORDER BY d.event_time DESC
LIMIT %(limit)s
"""


@dg.asset_check(
    asset="package_detections",
    description="Great Expectations suite `detections` on the newest day of rows (at most 100 000): unique ids, "
    "known kinds, facilities and classes, confidences in [0, 1], well-formed boxes, sane latencies.",
)
def detections_expectations(
    database: DatabaseResource, settings: dg.ResourceParam[PipelineSettings]
) -> dg.AssetCheckResult:
    import pandas as pd

    from quality.expectations import detections_suite
    from quality.validate import validate

    frames = []
    for shard in database.shards().names:  # each shard's newest day
        with database.connect(shard=shard) as conn:
            cursor = conn.execute(_RECENT, {"limit": 100_000})
            frames.append(pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description or []]))
    frame = pd.concat(frames, ignore_index=True).head(100_000)
    outcome = validate(frame, "detections", detections_suite(settings.facilities), settings.state_dir)
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows": outcome.rows,
            "evaluated_expectations": len(outcome.outcomes),
            "failing_expectations": dg.MetadataValue.json(outcome.failures_table()),
            "data_docs": dg.MetadataValue.url(outcome.docs_path or ""),
        },
    )
