-- Per-facility daily analytics (Dagster asset `facility_daily_analytics`, issue 7).
-- One row per facility and local day (the facility's own time zone); recomputing a partition
-- deletes and re-inserts its rows in one transaction, so a re-run replaces, never duplicates.

CREATE TABLE facility_daily_analytics (
    facility_id              text NOT NULL REFERENCES facilities ON DELETE CASCADE,
    day                      date NOT NULL,
    timezone                 text NOT NULL,
    window_start             timestamptz NOT NULL,
    window_end               timestamptz NOT NULL CHECK (window_end > window_start),
    decisions                integer NOT NULL CHECK (decisions >= 0),
    packages_seen            integer NOT NULL CHECK (packages_seen >= 0),
    expected_packages        integer NOT NULL CHECK (expected_packages >= 0),
    -- Decisions per local clock hour 0..23 (on a DST fall-back day the repeated hour is summed).
    throughput_by_hour       integer[] NOT NULL CHECK (cardinality(throughput_by_hour) = 24),
    damaged_packages         integer NOT NULL CHECK (damaged_packages >= 0),
    damage_rate              double precision NOT NULL CHECK (damage_rate BETWEEN 0 AND 1),
    misplaced_packages       integer NOT NULL CHECK (misplaced_packages >= 0),
    misplacement_rate        double precision NOT NULL CHECK (misplacement_rate BETWEEN 0 AND 1),
    anomalies_total          integer NOT NULL CHECK (anomalies_total >= 0),
    -- {"<kind>": {"<severity>": count}}
    anomalies                jsonb NOT NULL DEFAULT '{}',
    latency_p50_ms           double precision,
    latency_p99_ms           double precision,
    fallback_decisions       integer NOT NULL CHECK (fallback_decisions >= 0),
    fallback_rate            double precision NOT NULL CHECK (fallback_rate BETWEEN 0 AND 1),
    -- Decisions without a quality assessment: the completeness check wants 0.
    unassessed_decisions     integer NOT NULL CHECK (unassessed_decisions >= 0),
    -- Sum over zones of |seen - expected|.
    discrepancy_total        integer NOT NULL CHECK (discrepancy_total >= 0),
    -- Where the hourly throughput came from: the hourly aggregate or the raw decisions.
    source                   text NOT NULL CHECK (source IN ('hourly_aggregate', 'raw')),
    computed_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (facility_id, day)
);
CREATE INDEX facility_daily_analytics_day ON facility_daily_analytics (day);

-- Inventory discrepancies: packages expected per zone (`zones.expected_daily_packages`) against
-- distinct packages decided in that zone that day.
CREATE TABLE facility_zone_daily_analytics (
    facility_id              text NOT NULL,
    day                      date NOT NULL,
    zone_id                  text NOT NULL,
    expected_packages        integer NOT NULL CHECK (expected_packages >= 0),
    seen_packages            integer NOT NULL CHECK (seen_packages >= 0),
    discrepancy              integer GENERATED ALWAYS AS (seen_packages - expected_packages) STORED,
    PRIMARY KEY (facility_id, day, zone_id),
    FOREIGN KEY (facility_id, day) REFERENCES facility_daily_analytics ON DELETE CASCADE
);
