"""Redis Streams: per-facility fan-out of decisions and anomalies, per-minute windows."""
