"""Cameras, projection and the small 3D rasteriser the synthetic scenes are drawn with.

World coordinates are metres: ``x`` to the right, ``y`` up, ``z`` forward along
the ground (the camera stands at ``x = z = 0``, ``elevation`` metres above the
ground, pitched down by ``pitch`` radians). Image coordinates are pixels with
the origin at the top-left corner of the top-left pixel.

Everything is drawn without anti-aliasing on the outlines of objects, so that a
mask drawn with the same call covers exactly the pixels whose colour changed;
fixed-point coordinates (``shift``) keep sub-pixel placement.
"""

import dataclasses
import logging
import math

import cv2
import numpy as np

logger = logging.getLogger(__name__)

SHIFT = 4
"""Fractional bits of the fixed-point coordinates given to OpenCV drawing calls."""

NEAR = 0.5
"""Near clipping distance in metres: geometry closer to the camera is cut off."""


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera above a flat ground, looking along +z and pitched down.

    Attributes:
        width: image width in pixels
        height: image height in pixels
        focal: focal length in pixels
        cx: principal point, x (pixels)
        cy: principal point, y (pixels)
        elevation: height of the camera above the ground (metres)
        pitch: downward tilt in radians (0 = horizontal)
    """

    width: int
    height: int
    focal: float
    cx: float
    cy: float
    elevation: float
    pitch: float

    @classmethod
    def create(cls, width, height, fov_degrees, elevation, pitch_degrees):
        """Builds a camera from its horizontal field of view and pitch in degrees."""
        focal = width / 2.0 / math.tan(math.radians(fov_degrees) / 2.0)
        return cls(
            width=int(width),
            height=int(height),
            focal=focal,
            cx=width / 2.0,
            cy=height / 2.0,
            elevation=float(elevation),
            pitch=math.radians(pitch_degrees),
        )

    def depth(self, points):
        """Distance along the optical axis of world points (..., 3)."""
        points = np.asarray(points, dtype=np.float64)
        return -(points[..., 1] - self.elevation) * math.sin(self.pitch) + points[
            ..., 2
        ] * math.cos(self.pitch)

    def project(self, points):
        """Projects world points (..., 3) to pixels (..., 2); also returns their depth."""
        points = np.asarray(points, dtype=np.float64)
        sin_pitch, cos_pitch = math.sin(self.pitch), math.cos(self.pitch)
        relative_y = points[..., 1] - self.elevation
        depth = -relative_y * sin_pitch + points[..., 2] * cos_pitch
        safe = np.where(depth > 1e-6, depth, 1e-6)
        image_x = self.cx + self.focal * points[..., 0] / safe
        image_y = (
            self.cy + self.focal * (-relative_y * cos_pitch - points[..., 2] * sin_pitch) / safe
        )
        return np.stack([image_x, image_y], axis=-1), depth

    def scale_at(self, depth):
        """Pixels per metre of a surface facing the camera at the given depth."""
        return self.focal / np.maximum(depth, 1e-6)

    @property
    def horizon_y(self):
        """Image row of the horizon (may lie outside the image)."""
        return self.cy - self.focal * math.tan(self.pitch)

    def ground_z_at_row(self, row):
        """Ground distance z seen at an image row below the horizon (inf above it)."""
        angle = self.pitch + math.atan((row - self.cy) / self.focal)
        if angle <= 1e-6:
            return math.inf
        horizontal = self.elevation / math.tan(angle)
        return horizontal

    def ground_x_at(self, column, z):
        """Ground x seen at an image column for a ground point at distance z."""
        depth = self.elevation * math.sin(self.pitch) + z * math.cos(self.pitch)
        return (column - self.cx) * depth / self.focal

    def view_angles(self, x, z, height=0.0):
        """Elevation and azimuth (radians) under which the camera sees a point."""
        horizontal = math.hypot(x, z)
        elevation = math.atan2(self.elevation - height, max(horizontal, 1e-6))
        azimuth = math.atan2(x, max(z, 1e-6))
        distance = math.hypot(horizontal, self.elevation - height)
        return elevation, azimuth, distance


class Canvas:
    """An image (and optionally a mask) that world-space polygons are drawn onto.

    Args:
        image: uint8 BGR array drawn into in place
        camera: the Camera projecting world points
        mask: optional array of the same height and width; every drawn polygon
            also writes ``mask_value`` into it
        mask_value: the value written into ``mask``
        offset: (x, y) pixel offset subtracted after projection (to draw into a
            crop of the full frame)
    """

    def __init__(self, image, camera, mask=None, mask_value=255, offset=(0, 0)):
        self.image = image
        self.camera = camera
        self.mask = mask
        self.mask_value = mask_value
        self.offset = np.asarray(offset, dtype=np.float64)

    def polygon(self, points, colour):
        """Fills a planar world polygon (N, 3), clipped at the near plane."""
        pixels = self.project_polygon(points)
        if pixels is None:
            return
        fill_polygon(self.image, pixels, colour)
        if self.mask is not None:
            fill_polygon(self.mask, pixels, self.mask_value)

    def ground(self, points_xz, colour, height=0.0):
        """Fills a polygon lying on the ground given as (N, 2) x, z points."""
        points_xz = np.asarray(points_xz, dtype=np.float64)
        points = np.column_stack(
            [points_xz[:, 0], np.full(len(points_xz), height), points_xz[:, 1]]
        )
        self.polygon(points, colour)

    def circle(self, centre, radius, colour):
        """Fills a disc of a world radius facing the camera, centred at a world point."""
        if self.camera.depth(centre) < NEAR:
            return
        pixel, depth = self.camera.project(np.asarray(centre, dtype=np.float64))
        pixel = pixel - self.offset
        radius_px = float(self.camera.scale_at(depth) * radius)
        fill_circle(self.image, pixel, radius_px, colour)
        if self.mask is not None:
            fill_circle(self.mask, pixel, radius_px, self.mask_value)

    def texture(self, texture, corners):
        """Warps a texture image onto a world quad (corners: top-left, top-right,
        bottom-right, bottom-left)."""
        corners = np.asarray(corners, dtype=np.float64)
        if np.any(self.camera.depth(corners) < NEAR):
            return
        pixels, _ = self.camera.project(corners)
        pixels = pixels - self.offset
        warp_texture(self.image, texture, pixels, mask=self.mask, mask_value=self.mask_value)

    def project_polygon(self, points):
        """Projects a world polygon to pixels (in this canvas), or None if behind."""
        points = clip_near(self.camera, np.asarray(points, dtype=np.float64))
        if points is None:
            return None
        pixels, _ = self.camera.project(points)
        return pixels - self.offset


def clip_near(camera, points):
    """Clips a polygon (N, 3) against the near plane; None if nothing is left."""
    depth = camera.depth(points)
    if np.all(depth >= NEAR):
        return points
    if np.all(depth < NEAR):
        return None
    clipped = []
    count = len(points)
    for index in range(count):
        current, following = points[index], points[(index + 1) % count]
        depth_current, depth_following = depth[index], depth[(index + 1) % count]
        if depth_current >= NEAR:
            clipped.append(current)
        if (depth_current >= NEAR) != (depth_following >= NEAR):
            fraction = (NEAR - depth_current) / (depth_following - depth_current)
            clipped.append(current + fraction * (following - current))
    if len(clipped) < 3:
        return None
    return np.array(clipped)


def fill_polygon(image, pixels, colour):
    """Fills a polygon given in float pixel coordinates (no anti-aliasing).

    Pixel ``(column, row)`` covers ``[column, column + 1) x [row, row + 1)``;
    OpenCV samples pixel centres at integer coordinates, hence the half-pixel
    shift.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    if not np.all(np.isfinite(pixels)):
        return
    # Far-away geometry can project to huge coordinates: keep it within int32.
    pixels = np.clip(pixels, -1e5, 1e5)
    fixed = np.round((pixels - 0.5) * (1 << SHIFT)).astype(np.int32)
    cv2.fillPoly(image, [fixed], _colour(colour, image), lineType=cv2.LINE_8, shift=SHIFT)


def fill_circle(image, centre, radius, colour):
    """Fills a disc given in float pixel coordinates (no anti-aliasing)."""
    if radius <= 0 or not np.all(np.isfinite(centre)):
        return
    if abs(centre[0]) > 1e5 or abs(centre[1]) > 1e5:
        return
    fixed_centre = tuple(int(round((value - 0.5) * (1 << SHIFT))) for value in centre)
    fixed_radius = int(round(radius * (1 << SHIFT)))
    cv2.circle(image, fixed_centre, fixed_radius, _colour(colour, image), -1, cv2.LINE_8, SHIFT)


def draw_line(image, start, end, colour, thickness=1):
    """Draws an anti-aliased line in float pixel coordinates (decoration only)."""
    start = tuple(int(round((value - 0.5) * (1 << SHIFT))) for value in start)
    end = tuple(int(round((value - 0.5) * (1 << SHIFT))) for value in end)
    cv2.line(
        image, start, end, _colour(colour, image), max(1, int(round(thickness))), cv2.LINE_AA, SHIFT
    )


def warp_texture(image, texture, quad, mask=None, mask_value=255):
    """Warps a texture onto a pixel quad of an image (in place).

    Args:
        image: destination uint8 image
        texture: uint8 image with the same number of channels
        quad: (4, 2) float pixel corners: top-left, top-right, bottom-right, bottom-left
        mask: optional mask also written where the texture lands
        mask_value: value written into ``mask``
    """
    warped = warp_quad(texture, quad, image.shape[:2])
    if warped is None:
        return
    (x0, y0, x1, y1), colour, covered = warped
    image[y0:y1, x0:x1][covered] = colour[covered]
    if mask is not None:
        mask[y0:y1, x0:x1][covered] = mask_value


def warp_quad(texture, quad, shape):
    """Warps a texture with a perspective transform onto a pixel quad.

    The texture is first shrunk with area averaging to about the quad's size,
    so that small renderings of text look like a camera's, not like aliasing.

    Args:
        texture: uint8 image
        quad: (4, 2) float pixel corners: top-left, top-right, bottom-right, bottom-left
        shape: (height, width) of the destination image (the result is clipped to it)

    Returns:
        ((x0, y0, x1, y1), warped, covered): the destination region, the warped
        texture over it and a boolean array of the pixels inside the quad; or
        None if the quad misses the image
    """
    quad = np.asarray(quad, dtype=np.float64)
    if not np.all(np.isfinite(quad)):
        return None
    height, width = shape
    x0 = max(int(math.floor(quad[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(quad[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(quad[:, 0].max())) + 1, width)
    y1 = min(int(math.ceil(quad[:, 1].max())) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    local = quad - (x0, y0)
    covered = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    fill_polygon(covered, local, 1)
    covered = covered.astype(bool)
    if not covered.any():
        return None
    target_width = max(np.linalg.norm(local[1] - local[0]), np.linalg.norm(local[2] - local[3]))
    target_height = max(np.linalg.norm(local[3] - local[0]), np.linalg.norm(local[2] - local[1]))
    source = texture
    if target_width * 1.5 < texture.shape[1] and target_height * 1.5 < texture.shape[0]:
        source = cv2.resize(
            texture,
            (max(int(round(target_width * 1.5)), 2), max(int(round(target_height * 1.5)), 2)),
            interpolation=cv2.INTER_AREA,
        )
    source_height, source_width = source.shape[:2]
    # Both sides in pixel-centre coordinates (OpenCV's convention).
    source_corners = (
        np.array(
            [[0, 0], [source_width, 0], [source_width, source_height], [0, source_height]],
            dtype=np.float32,
        )
        - 0.5
    )
    matrix = cv2.getPerspectiveTransform(source_corners, (local - 0.5).astype(np.float32))
    warped = cv2.warpPerspective(
        source,
        matrix,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return (x0, y0, x1, y1), warped, covered


def _colour(colour, image):
    if np.isscalar(colour):
        return float(colour) if image.dtype != np.uint8 else int(colour)
    if image.ndim == 2:
        return int(colour[0]) if image.dtype == np.uint8 else float(colour[0])
    return tuple(int(value) for value in colour)
