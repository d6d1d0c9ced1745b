"""Kafka ingest: consumer-group workers writing micro-batches exactly once."""
