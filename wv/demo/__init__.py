"""``wv demo``: the whole platform in one command (see ``wv.demo.story`` for the steps)."""

from wv.demo.cli import app

__all__ = ["app"]
