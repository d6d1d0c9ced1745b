"""Who a tracked package is: the identity a label or barcode reader attaches to a track.

The model sees parcels, not labels. A deployment plugs in its reader here (scanner reads matched to
the track's box); on synthetic cameras the simulator plays that reader
(:class:`simulator.identity.SimulatorIdentity`). Without a reader the package id is the track id
and the SKU is unknown. Only identity comes from a reader; condition, location and appearance
always come from the model.
"""

from __future__ import annotations

from typing import Protocol

from contract.frames import Box, Frame, PackageIdentity


class IdentityReader(Protocol):
    """Reads the identity of the package at `box` in `frame`, or None when it cannot."""

    def read(self, frame: Frame, box: Box) -> PackageIdentity | None: ...
