"""Transports that carry outbox events to the centre: Kafka (default) and gRPC, one interface."""
