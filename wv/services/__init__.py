"""Local backing services (PostgreSQL, Redis, Kafka-protocol broker) for development and tests."""
