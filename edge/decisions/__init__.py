"""Per-track decisions: smoothing over frames, zones, reference embeddings, anomaly flags, events."""
