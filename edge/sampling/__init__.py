"""A small, rate-limited sample of each camera's frames kept as unlabeled training data (issue 21)."""

from edge.sampling.hub import sampling_hub

__all__ = ["sampling_hub"]
