-- Model-quality loop: where verified samples point back to their pixels, hard examples and their
-- labels, drift evaluations per facility-day, the promotion history of models (who approved what,
-- what a rollback returns to), and failed orchestration runs for on-call.

-- Crop reference of a sampled decision (the edge ships no pixels: camera + frame index + box),
-- the track it decided, and where its verified label came from.
ALTER TABLE verified_samples
    ADD COLUMN track_id      text NOT NULL DEFAULT '',
    ADD COLUMN frame_index   bigint,
    ADD COLUMN bbox          real[] CHECK (bbox IS NULL OR cardinality(bbox) = 4),
    ADD COLUMN label_source  text CHECK (label_source IN ('prodigy', 'label-studio', 'ground-truth'));

-- One row per exported hard example; labels come back through the same import as verified samples.
CREATE TABLE hard_examples (
    export_id                text NOT NULL REFERENCES hard_example_exports ON DELETE CASCADE,
    event_id                 text NOT NULL,
    facility_id              text NOT NULL,
    event_time               timestamptz NOT NULL,
    package_id               text NOT NULL,
    track_id                 text NOT NULL,
    camera_id                text NOT NULL,
    frame_index              bigint,
    bbox                     real[] NOT NULL CHECK (cardinality(bbox) = 4),
    predicted_condition      text NOT NULL
                             CHECK (predicted_condition IN ('ok', 'crushed', 'torn', 'wet', 'open')),
    predicted_confidence     real NOT NULL CHECK (predicted_confidence BETWEEN 0 AND 1),
    crop_path                text,
    verified_condition       text CHECK (verified_condition IN ('ok', 'crushed', 'torn', 'wet', 'open')),
    verifier                 text,
    verified_at              timestamptz,
    label_source             text CHECK (label_source IN ('prodigy', 'label-studio', 'ground-truth')),
    PRIMARY KEY (export_id, event_id),
    CHECK ((verified_condition IS NULL) = (verified_at IS NULL))
);
CREATE INDEX hard_examples_event ON hard_examples (event_id);

-- Drift evaluation of one facility-day; re-running the partition replaces its row.
CREATE TABLE drift_evaluations (
    facility_id              text NOT NULL,
    eval_date                date NOT NULL,
    model_version            text NOT NULL DEFAULT '',
    samples                  integer NOT NULL CHECK (samples >= 0),
    verified                 integer NOT NULL CHECK (verified >= 0),
    accuracy                 double precision CHECK (accuracy BETWEEN 0 AND 1),
    macro_f1                 double precision CHECK (macro_f1 BETWEEN 0 AND 1),
    expected_calibration_error double precision CHECK (expected_calibration_error BETWEEN 0 AND 1),
    drift_statistic          double precision,
    drift_p_value            double precision CHECK (drift_p_value BETWEEN 0 AND 1),
    drift_method             text NOT NULL DEFAULT '',
    per_class                jsonb NOT NULL DEFAULT '{}',
    confusion                jsonb NOT NULL DEFAULT '{}',
    confidence_histogram     jsonb NOT NULL DEFAULT '{}',
    chart_path               text,
    evaluated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (facility_id, eval_date)
);
CREATE INDEX drift_evaluations_evaluated_at ON drift_evaluations (evaluated_at);

-- Every change of the production model, in order: approvals and rollbacks, with the person.
CREATE TABLE model_promotions (
    id                       bigserial PRIMARY KEY,
    version                  text NOT NULL REFERENCES model_versions,
    previous                 text REFERENCES model_versions,
    action                   text NOT NULL CHECK (action IN ('approve', 'rollback')),
    actor                    text NOT NULL CHECK (actor <> ''),
    reason                   text NOT NULL DEFAULT '',
    at                       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_promotions_version ON model_promotions (version, id);

-- Failed Dagster runs, recorded by the run-failure sensor for on-call.
CREATE TABLE orchestration_failures (
    run_id                   text PRIMARY KEY,
    job_name                 text NOT NULL,
    partition_key            text,
    failed_at                timestamptz NOT NULL DEFAULT now(),
    error                    text NOT NULL DEFAULT '',
    failed_steps             text[] NOT NULL DEFAULT '{}',
    run_url                  text NOT NULL DEFAULT '',
    acknowledged_at          timestamptz
);
CREATE INDEX orchestration_failures_open ON orchestration_failures (failed_at) WHERE acknowledged_at IS NULL;
