-- Per-facility hourly counts as continuous aggregates (one per hypertable: a continuous
-- aggregate reads a single hypertable), joined by the view `facility_hourly_counts` with the
-- same columns as on plain PostgreSQL. Real-time aggregation is on, so the newest hour is
-- complete before its refresh; the policies refresh the last three days every 30 minutes.

CREATE MATERIALIZED VIEW facility_hourly_detections
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT facility_id,
       time_bucket(INTERVAL '1 hour', event_time) AS bucket,
       count(*) FILTER (WHERE kind = 'detection') AS detections,
       count(*) FILTER (WHERE kind = 'decision') AS decisions,
       count(*) FILTER (WHERE fallback) AS fallback
FROM package_detections
GROUP BY facility_id, time_bucket(INTERVAL '1 hour', event_time)
WITH NO DATA;

CREATE MATERIALIZED VIEW facility_hourly_quality
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT facility_id,
       time_bucket(INTERVAL '1 hour', event_time) AS bucket,
       count(*) FILTER (WHERE condition <> 'ok') AS damaged
FROM quality_assessments
GROUP BY facility_id, time_bucket(INTERVAL '1 hour', event_time)
WITH NO DATA;

CREATE MATERIALIZED VIEW facility_hourly_anomalies
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT facility_id,
       time_bucket(INTERVAL '1 hour', flagged_at) AS bucket,
       count(*) AS anomalies
FROM anomaly_flags
GROUP BY facility_id, time_bucket(INTERVAL '1 hour', flagged_at)
WITH NO DATA;

SELECT add_continuous_aggregate_policy(view, start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '1 hour',
                                       schedule_interval => INTERVAL '30 minutes')
FROM unnest(ARRAY['facility_hourly_detections', 'facility_hourly_quality',
                  'facility_hourly_anomalies']::regclass[]) AS view;

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
