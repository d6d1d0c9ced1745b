"""Frame preprocessing shared by training and every inference engine (numpy + OpenCV only, no torch).

Frames of any size are resized (stretched, no letterbox) to the model input; the model predicts
boxes in normalised coordinates, so `postprocess.decode` maps them back to each frame exactly.
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
