-- The camera registry the edges follow (`cameras_from: registry`): a camera is switched off rather
-- than deleted, so the decisions its edge still sends while stopping it are accepted, and every
-- change moves updated_at so an edge (and an operator) can tell which registration it runs.

ALTER TABLE cameras
    ADD COLUMN enabled    boolean     NOT NULL DEFAULT true,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
