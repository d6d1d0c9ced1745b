"""Frame preprocessing shared by training and every inference engine (numpy + OpenCV only, no torch).

The resize rule — one function, `resize_rgb`, used by training (`model_lifecycle.data.frame_to_sample`)
and by every engine (`preprocess`):

- a BGR uint8 frame of any size and aspect ratio is stretched to the model input (height, width):
  no letterbox, no crop; INTER_AREA when it shrinks both sides, INTER_LINEAR otherwise; then RGB;
- box targets are the frame's pixel boxes divided by the frame's width and height, and the model
  predicts normalised boxes, so `postprocess.decode` multiplies by each frame's own size and boxes
  map back exactly whatever the aspect;
- why not letterbox: every input token sees picture (no padding tokens to pay for on a 2-core
  edge box) and a fixed camera always has the same aspect, so a model trained on its frames
  learns its stretch once. Photographs far from the input's aspect (portrait phone photos on the
  16:9 default) are squeezed: train and run such data with `--input-size` near its aspect.

Normalisation uses the ImageNet mean/std that DINOv2/DINOv3 checkpoints were trained with.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

DEFAULT_INPUT_SIZE: tuple[int, int] = (224, 384)
"""(height, width) of the model input; see `config.py` for why."""

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_SCALE = (1.0 / (255.0 * STD)).reshape(1, 3, 1, 1)
_SHIFT = (MEAN / STD).reshape(1, 3, 1, 1)


def resize_rgb(image: np.ndarray, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """BGR uint8 (H, W, 3) frame -> RGB uint8 (3, h, w) at the model input size."""
    h, w = input_size
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 (H, W, 3) frame, got {image.dtype} {image.shape}")
    interp = cv2.INTER_AREA if image.shape[0] >= h and image.shape[1] >= w else cv2.INTER_LINEAR
    resized = cv2.resize(image, (w, h), interpolation=interp)
    return np.ascontiguousarray(resized[:, :, ::-1].transpose(2, 0, 1))


def normalize(batch: np.ndarray) -> np.ndarray:
    """RGB uint8 (B, 3, h, w) -> float32 network input."""
    return batch.astype(np.float32) * _SCALE - _SHIFT


def preprocess(images: Sequence[np.ndarray], input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """BGR uint8 frames -> float32 (B, 3, h, w) batch, ready for any engine."""
    if not images:
        return np.zeros((0, 3, *input_size), dtype=np.float32)
    return normalize(np.stack([resize_rgb(im, input_size) for im in images]))
