-- Reference data: facilities, their zones and cameras, packages, models, and the work tables
-- around them. Time-series tables follow in 0002 (TimescaleDB or native partitions).

CREATE TABLE facilities (
    facility_id              text PRIMARY KEY CHECK (facility_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name                     text NOT NULL,
    timezone                 text NOT NULL DEFAULT 'UTC',
    expected_daily_packages  integer NOT NULL DEFAULT 0 CHECK (expected_daily_packages >= 0),
    created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE zones (
    facility_id              text NOT NULL REFERENCES facilities ON DELETE CASCADE,
    zone_id                  text NOT NULL CHECK (zone_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    kind                     text NOT NULL DEFAULT 'lane'
                             CHECK (kind IN ('lane', 'sorter', 'holding', 'dock', 'other')),
    next_zone_id             text,
    max_dwell_seconds        integer CHECK (max_dwell_seconds > 0),
    expected_daily_packages  integer NOT NULL DEFAULT 0 CHECK (expected_daily_packages >= 0),
    PRIMARY KEY (facility_id, zone_id)
);

CREATE TABLE cameras (
    facility_id              text NOT NULL REFERENCES facilities ON DELETE CASCADE,
    camera_id                text NOT NULL CHECK (camera_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    source_uri               text,
    description              text NOT NULL DEFAULT '',
    PRIMARY KEY (facility_id, camera_id)
);

-- One row per physical package; upserted by ingest from decision events.
CREATE TABLE packages (
    package_id               text PRIMARY KEY,
    facility_id              text NOT NULL REFERENCES facilities,
    sku                      text NOT NULL DEFAULT '',
    expected_zone            text NOT NULL DEFAULT '',
    last_zone                text NOT NULL DEFAULT '',
    last_condition           text NOT NULL DEFAULT 'ok'
                             CHECK (last_condition IN ('ok', 'crushed', 'torn', 'wet', 'open')),
    first_seen               timestamptz NOT NULL,
    last_seen                timestamptz NOT NULL CHECK (last_seen >= first_seen),
    decisions                integer NOT NULL DEFAULT 0 CHECK (decisions >= 0)
);
CREATE INDEX packages_facility_last_seen ON packages (facility_id, last_seen);

-- A model version is an immutable directory; this is its registry entry and life cycle.
CREATE TABLE model_versions (
    version                  text PRIMARY KEY CHECK (version ~ '^[A-Za-z0-9_.-]{1,64}$'),
    config                   text NOT NULL,
    path                     text NOT NULL,
    status                   text NOT NULL DEFAULT 'candidate'
                             CHECK (status IN ('candidate', 'approved', 'production', 'retired',
                                               'rolled_back', 'rejected')),
    parent_version           text REFERENCES model_versions,
    metrics                  jsonb NOT NULL DEFAULT '{}',
    created_at               timestamptz NOT NULL DEFAULT now(),
    approved_by              text,
    approved_at              timestamptz,
    promoted_at              timestamptz,
    notes                    text NOT NULL DEFAULT '',
    CHECK (status NOT IN ('approved', 'production') OR approved_by IS NOT NULL)
);
-- At most one production model at a time.
CREATE UNIQUE INDEX model_versions_one_production ON model_versions ((true)) WHERE status = 'production';

-- Human verification of sampled decisions (1 % per facility per day).
CREATE TABLE verified_samples (
    event_id                 text PRIMARY KEY,
    facility_id              text NOT NULL REFERENCES facilities,
    sample_date              date NOT NULL,
    event_time               timestamptz NOT NULL,
    package_id               text NOT NULL,
    camera_id                text NOT NULL DEFAULT '',
    model_version            text NOT NULL DEFAULT '',
    predicted_condition      text NOT NULL
                             CHECK (predicted_condition IN ('ok', 'crushed', 'torn', 'wet', 'open')),
    predicted_confidence     real NOT NULL CHECK (predicted_confidence BETWEEN 0 AND 1),
    verified_condition       text CHECK (verified_condition IN ('ok', 'crushed', 'torn', 'wet', 'open')),
    verifier                 text,
    verified_at              timestamptz,
    crop_path                text,
    embedding                real[],
    exported_at              timestamptz NOT NULL DEFAULT now(),
    CHECK ((verified_condition IS NULL) = (verified_at IS NULL))
);
CREATE INDEX verified_samples_facility_date ON verified_samples (facility_id, sample_date);

CREATE TABLE hard_example_exports (
    export_id                text PRIMARY KEY,
    week_start               date NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    confidence_low           real NOT NULL CHECK (confidence_low BETWEEN 0 AND 1),
    confidence_high          real NOT NULL CHECK (confidence_high BETWEEN 0 AND 1),
    examples                 integer NOT NULL CHECK (examples >= 0),
    manifest_path            text NOT NULL,
    counts                   jsonb NOT NULL DEFAULT '{}',
    CHECK (confidence_low < confidence_high)
);

-- Transactional outbox towards the ERP: written in the same transaction as its source rows.
CREATE TABLE erp_outbox (
    id                       bigserial PRIMARY KEY,
    idempotency_key          text NOT NULL UNIQUE,
    kind                     text NOT NULL CHECK (kind IN ('damage_claim', 'discrepancy_report')),
    facility_id              text NOT NULL REFERENCES facilities,
    business_date            date NOT NULL,
    payload                  jsonb NOT NULL,
    status                   text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'sent', 'acknowledged', 'failed', 'parked')),
    attempts                 integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at          timestamptz NOT NULL DEFAULT now(),
    last_error               text,
    adapter                  text,
    external_id              text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    sent_at                  timestamptz,
    acknowledged_at          timestamptz
);
CREATE INDEX erp_outbox_due ON erp_outbox (status, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX erp_outbox_facility_date ON erp_outbox (facility_id, business_date);

-- Messages the centre could not accept, with the reason and the raw bytes, never lost.
CREATE TABLE dead_letters (
    id                       bigserial PRIMARY KEY,
    received_at              timestamptz NOT NULL DEFAULT now(),
    source                   text NOT NULL,
    source_partition         integer,
    source_offset            bigint,
    reason                   text NOT NULL,
    event_id                 text,
    facility_id              text,
    raw                      bytea NOT NULL
);
-- A Kafka message is dead-lettered once, whatever the replays.
CREATE UNIQUE INDEX dead_letters_kafka_position ON dead_letters (source, source_partition, source_offset)
    WHERE source_offset IS NOT NULL;
CREATE INDEX dead_letters_received ON dead_letters (received_at);
