"""Declarative anomaly rules: config, pure engine, and the periodic runner."""
