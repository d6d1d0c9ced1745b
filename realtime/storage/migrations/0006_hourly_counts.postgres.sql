-- Per-facility hourly counts, the same relations on both flavours: on TimescaleDB they are
-- continuous aggregates, here plain views over the partitioned tables (hour buckets aligned to
-- UTC like time_bucket). Query `facility_hourly_counts`; the three parts are its inputs.

CREATE VIEW facility_hourly_detections AS
SELECT facility_id,
       date_bin(INTERVAL '1 hour', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*) FILTER (WHERE kind = 'detection') AS detections,
       count(*) FILTER (WHERE kind = 'decision') AS decisions,
       count(*) FILTER (WHERE fallback) AS fallback
FROM package_detections
GROUP BY 1, 2;

CREATE VIEW facility_hourly_quality AS
SELECT facility_id,
       date_bin(INTERVAL '1 hour', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*) FILTER (WHERE condition <> 'ok') AS damaged
FROM quality_assessments
GROUP BY 1, 2;

CREATE VIEW facility_hourly_anomalies AS
SELECT facility_id,
       date_bin(INTERVAL '1 hour', flagged_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*) AS anomalies
FROM anomaly_flags
GROUP BY 1, 2;

CREATE VIEW facility_hourly_counts AS
SELECT facility_id, bucket,
       coalesce(d.detections, 0) AS detections,
       coalesce(d.decisions, 0) AS decisions,
       coalesce(q.damaged, 0) AS damaged,
       coalesce(d.fallback, 0) AS fallback,
       coalesce(a.anomalies, 0) AS anomalies
FROM facility_hourly_detections d
FULL JOIN facility_hourly_quality q USING (facility_id, bucket)
FULL JOIN facility_hourly_anomalies a USING (facility_id, bucket);
