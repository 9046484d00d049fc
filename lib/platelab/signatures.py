"""Compact image signatures for near-duplicate search, computed offline.

A signature is a 64x36 grey thumbnail (area-averaged, so sensor noise and
compression artefacts average out while a moved vehicle still changes whole
cells) plus a 64-bit difference hash of it, used to find candidate pairs
without comparing all pairs. Sharpness (variance of the Laplacian) picks the
representative of a group.

Signatures are computed wherever the pixels are already decoded: stage 01
computes them while sampling frames (see :mod:`platelab.collect.frames`), so curation
does not decode every PNG again.
"""

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = (64, 36)
"""(width, height) of the signature thumbnail."""
SIGNATURE_LENGTH = THUMBNAIL_SIZE[0] * THUMBNAIL_SIZE[1]
SHARPNESS_WIDTH = 640
"""Images are resized to this width before measuring sharpness, so it compares across sizes."""


def to_gray(image):
    """Returns a single-channel uint8 view of a BGR, BGRA or grey image."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def compute_signature(image):
    """Computes the thumbnail signature of an image.

    Args:
        image: an HxW, HxWx3 (BGR) or HxWx4 uint8 array

    Returns:
        a flat uint8 array of length :data:`SIGNATURE_LENGTH`
    """
    gray = to_gray(image)
    thumbnail = cv2.resize(gray, THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA)
    return thumbnail.reshape(-1)


def difference_hash(signature):
    """Computes a 64-bit difference hash from a signature.

    Args:
        signature: a flat signature from :func:`compute_signature`

    Returns:
        a Python int in [0, 2**64)
    """
    thumbnail = np.asarray(signature, dtype=np.uint8).reshape(THUMBNAIL_SIZE[1], THUMBNAIL_SIZE[0])
    small = cv2.resize(thumbnail, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def sharpness(image):
    """Measures sharpness as the variance of the Laplacian at a fixed width.

    Args:
        image: an image array (any channels)

    Returns:
        a float; larger is sharper
    """
    gray = to_gray(image)
    height, width = gray.shape[:2]
    if width > SHARPNESS_WIDTH:
        gray = cv2.resize(
            gray,
            (SHARPNESS_WIDTH, max(1, round(height * SHARPNESS_WIDTH / width))),
            interpolation=cv2.INTER_AREA,
        )
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())
