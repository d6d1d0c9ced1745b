"""Multi-object tracking of packages across the frames of one camera."""
