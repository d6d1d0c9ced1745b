-- Time-series tables on TimescaleDB: the same columns, keys and indexes as the plain-PostgreSQL
-- variant, as hypertables with daily chunks. Compression and retention are TimescaleDB policies
-- (`wv db maintain` re-aligns the retention policy with WV_RETENTION_DAYS). Chunks compress
-- after 7 days, segmented by facility so per-facility range scans stay cheap; the idempotency
-- key (event_time, event_id) stays enforced on compressed chunks.

CREATE EXTENSION IF NOT EXISTS timescaledb;

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
);
SELECT create_hypertable('package_detections', by_range('event_time', INTERVAL '1 day'));
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
);
SELECT create_hypertable('quality_assessments', by_range('event_time', INTERVAL '1 day'));
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
);
SELECT create_hypertable('anomaly_flags', by_range('flagged_at', INTERVAL '1 day'));
CREATE INDEX anomaly_flags_facility_time ON anomaly_flags (facility_id, flagged_at);
CREATE INDEX anomaly_flags_package ON anomaly_flags (package_id, flagged_at) WHERE package_id <> '';

ALTER TABLE package_detections SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'facility_id',
    timescaledb.compress_orderby = 'event_time DESC, event_id'
);
ALTER TABLE quality_assessments SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'facility_id',
    timescaledb.compress_orderby = 'event_time DESC, event_id'
);
ALTER TABLE anomaly_flags SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'facility_id',
    timescaledb.compress_orderby = 'flagged_at DESC, anomaly_id'
);
SELECT add_compression_policy('package_detections', INTERVAL '7 days');
SELECT add_compression_policy('quality_assessments', INTERVAL '7 days');
SELECT add_compression_policy('anomaly_flags', INTERVAL '7 days');

SELECT add_retention_policy('package_detections', INTERVAL '90 days');
SELECT add_retention_policy('quality_assessments', INTERVAL '90 days');
SELECT add_retention_policy('anomaly_flags', INTERVAL '90 days');
