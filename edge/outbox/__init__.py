"""Durable local buffer of events between the pipeline and the centre (RocksDB via rocksdict)."""
