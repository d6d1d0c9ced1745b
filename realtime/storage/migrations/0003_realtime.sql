-- Realtime ingest: several events of one Kafka message can be dead-lettered, each with its own
-- reason, so a dead letter is unique per message position AND item (the event's index in its
-- DetectionBatch; 0 for a whole-message rejection). Replays still add nothing.
ALTER TABLE dead_letters ADD COLUMN source_item integer NOT NULL DEFAULT 0 CHECK (source_item >= 0);
DROP INDEX dead_letters_kafka_position;
CREATE UNIQUE INDEX dead_letters_kafka_position
    ON dead_letters (source, source_partition, source_offset, source_item)
    WHERE source_offset IS NOT NULL;
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);
