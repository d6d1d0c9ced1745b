"""Training samples and inference batches use one resize rule for frames of any size and aspect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contract.frames import Box, Frame, PackageTruth
from edge.model.preprocess import preprocess
from model_lifecycle.data import frame_to_sample, normalize_on_device


@pytest.mark.parametrize("shape", [(360, 640), (640, 360), (480, 640), (37, 53), (1500, 2000)])
def test_training_sees_the_pixels_inference_sees_and_boxes_map_back_exactly(shape: tuple[int, int]) -> None:
    h, w = shape
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    box = Box(w * 0.1, h * 0.2, w * 0.7, h * 0.9)
    frame = Frame("cam", 0, 0.0, image, [PackageTruth("p", "s", "box", "ok", box, "", "")])

    sample = frame_to_sample(frame, (192, 320))
    trained_on = normalize_on_device(torch.from_numpy(sample.image[None])).numpy()

    np.testing.assert_allclose(trained_on, preprocess([image], (192, 320)), atol=1e-5)
    np.testing.assert_allclose(sample.boxes[0] * [w, h, w, h], box.as_array(), rtol=1e-6)
