-- Time-series tables on plain PostgreSQL: native daily range partitions on the event time.
-- `wv db maintain` creates partitions ahead and drops those past the retention window.
-- The primary key includes the partition key, as PostgreSQL requires; (event_time, event_id)
-- is the idempotency key because a replayed event carries the same time and id.

CREATE TABLE package_detections (
    event_id                 text NOT NULL,
    event_time               timestamptz NOT NULL,
    kind                     text NOT NULL CHECK (kind IN ('detection', 'decision')),
    facility_id              text NOT NULL,
    camera_id                text NOT NULL,
    track_id                 text NOT NULL,
    package_id               text NOT NULL,
    sku                      text NOT NULL DEFAULT '',
    x1 real NOT NULL, y1 real NOT NULL, x2 real NOT NULL, y2 real NOT NULL,
    detection_confidence     real NOT NULL CHECK (detection_confidence BETWEEN 0 AND 1),
    zone                     text NOT NULL DEFAULT '',
    expected_zone            text NOT NULL DEFAULT '',
    model_version            text NOT NULL,
    engine                   text NOT NULL,
    precision                text NOT NULL,
    fallback                 boolean NOT NULL DEFAULT false,
    hard_example             boolean NOT NULL DEFAULT false,
    frames_observed          integer NOT NULL DEFAULT 1 CHECK (frames_observed >= 0),
    first_seen               timestamptz,
    decode_ms real, preprocess_ms real, queue_ms real, infer_ms real,
    track_ms real, decide_ms real, publish_ms real, end_to_end_ms real,
    embedding                real[],
    ingested_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (x2 >= x1 AND y2 >= y1),
    PRIMARY KEY (event_time, event_id)
) PARTITION BY RANGE (event_time);
CREATE INDEX package_detections_package ON package_detections (package_id, event_time);
CREATE INDEX package_detections_facility_time ON package_detections (facility_id, event_time);

CREATE TABLE quality_assessments (
    event_id                 text NOT NULL,
    event_time               timestamptz NOT NULL,
    facility_id              text NOT NULL,
    package_id               text NOT NULL,
    condition                text NOT NULL CHECK (condition IN ('ok', 'crushed', 'torn', 'wet', 'open')),
    p_ok real NOT NULL CHECK (p_ok BETWEEN 0 AND 1),
    p_crushed real NOT NULL CHECK (p_crushed BETWEEN 0 AND 1),
    p_torn real NOT NULL CHECK (p_torn BETWEEN 0 AND 1),
    p_wet real NOT NULL CHECK (p_wet BETWEEN 0 AND 1),
    p_open real NOT NULL CHECK (p_open BETWEEN 0 AND 1),
    condition_confidence     real NOT NULL CHECK (condition_confidence BETWEEN 0 AND 1),
    fallback                 boolean NOT NULL DEFAULT false,
    model_version            text NOT NULL,
    PRIMARY KEY (event_time, event_id)
) PARTITION BY RANGE (event_time);
CREATE INDEX quality_assessments_package ON quality_assessments (package_id, event_time);
CREATE INDEX quality_assessments_facility_time ON quality_assessments (facility_id, event_time);

CREATE TABLE anomaly_flags (
    anomaly_id               text NOT NULL,
    flagged_at               timestamptz NOT NULL,
    facility_id              text NOT NULL,
    camera_id                text NOT NULL DEFAULT '',
    package_id               text NOT NULL DEFAULT '',
    zone                     text NOT NULL DEFAULT '',
    event_id                 text NOT NULL DEFAULT '',
    kind                     text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    severity                 text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    score                    real NOT NULL DEFAULT 0,
    source                   text NOT NULL DEFAULT 'edge',
    evidence                 jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (flagged_at, anomaly_id)
) PARTITION BY RANGE (flagged_at);
CREATE INDEX anomaly_flags_facility_time ON anomaly_flags (facility_id, flagged_at);
CREATE INDEX anomaly_flags_package ON anomaly_flags (package_id, flagged_at) WHERE package_id <> '';

-- Rows outside every daily partition (late or very early events) land here instead of failing.
CREATE TABLE package_detections_default PARTITION OF package_detections DEFAULT;
CREATE TABLE quality_assessments_default PARTITION OF quality_assessments DEFAULT;
CREATE TABLE anomaly_flags_default PARTITION OF anomaly_flags DEFAULT;
