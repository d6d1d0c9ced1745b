-- A straggler fallback's detection is provisional: the late primary result for the same frame and
-- track replaces it (issue 23). The replacing row lists the ids it replaces (`supersedes`); the
-- replaced row keeps its values and names its replacement (`superseded_by`), so the current answer
-- is `superseded_by IS NULL` and the provisional one stays visible as such. The writer sets
-- `superseded_by` whichever of the two rows arrives first, and a replay sets the same value.
ALTER TABLE package_detections ADD COLUMN supersedes text[], ADD COLUMN superseded_by text;

-- Hourly counts count current answers only: a superseded detection and its replacement are one.
CREATE OR REPLACE VIEW facility_hourly_detections AS
SELECT facility_id,
       date_bin(INTERVAL '1 hour', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(*) FILTER (WHERE kind = 'detection' AND superseded_by IS NULL) AS detections,
       count(*) FILTER (WHERE kind = 'decision') AS decisions,
       count(*) FILTER (WHERE fallback AND superseded_by IS NULL) AS fallback
FROM package_detections
GROUP BY 1, 2;
