-- A straggler fallback's detection is provisional: the late primary result for the same frame and
-- track replaces it (issue 23). The replacing row lists the ids it replaces (`supersedes`); the
-- replaced row keeps its values and names its replacement (`superseded_by`), so the current answer
-- is `superseded_by IS NULL` and the provisional one stays visible as such. The writer sets
-- `superseded_by` whichever of the two rows arrives first, and a replay sets the same value.
ALTER TABLE package_detections ADD COLUMN supersedes text[], ADD COLUMN superseded_by text;

-- Hourly counts count current answers only: a superseded detection and its replacement are one.
-- A continuous aggregate's query cannot be replaced in place: drop and create it again (the
-- marking is an UPDATE, which the invalidation log sees, so refreshed hours follow it).
DROP VIEW facility_hourly_counts;
DROP MATERIALIZED VIEW facility_hourly_detections;

CREATE MATERIALIZED VIEW facility_hourly_detections
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT facility_id,
       time_bucket(INTERVAL '1 hour', event_time) AS bucket,
       count(*) FILTER (WHERE kind = 'detection' AND superseded_by IS NULL) AS detections,
       count(*) FILTER (WHERE kind = 'decision') AS decisions,
       count(*) FILTER (WHERE fallback AND superseded_by IS NULL) AS fallback
FROM package_detections
GROUP BY facility_id, time_bucket(INTERVAL '1 hour', event_time)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('facility_hourly_detections', start_offset => INTERVAL '3 days',
                                       end_offset => INTERVAL '1 hour',
                                       schedule_interval => INTERVAL '30 minutes');

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
