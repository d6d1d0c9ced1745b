"""The simulator as the barcode reader: its answer key names the package a detection overlaps.

Synthetic frames (and recorded simulator videos, through their sidecar) carry the truth of every
package in view; a detection takes the identity of the truth box it overlaps most. The edge uses
it when ``decisions.simulator_truth`` is on (:mod:`edge.decisions.identity`).
"""

from __future__ import annotations

from contract.frames import Box, Frame, PackageIdentity

MATCH_IOU = 0.3
"""Least overlap between a detection and a truth box for the truth to name it."""


class SimulatorIdentity:
    """Identity from the frame's ground truth; None on frames without it (real cameras)."""

    def read(self, frame: Frame, box: Box) -> PackageIdentity | None:
        best, best_iou = None, MATCH_IOU
        for truth in frame.truth:
            iou = box.iou(truth.box)
            if iou >= best_iou:
                best, best_iou = truth, iou
        return None if best is None else PackageIdentity(best.package_id, best.sku, best.expected_zone)
