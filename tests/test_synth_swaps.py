"""Synthetic US and EU plates drawn over the plates of real photos
(platelab.synth.swaps): each new plate covers the old at its own aspect ratio."""

import warnings

import numpy as np

from platelab.synth import plates, swaps


def _photo(seed=0, width=640, height=480):
    """A noisy photo with one flat grey Brazilian-shaped plate (3:1)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    boxes = np.array([[250, 300, 400, 350]], np.float32)
    image[300:350, 250:400] = (128, 128, 128)
    return image, boxes


def test_each_new_plate_is_as_wide_as_the_old_one_at_its_styles_aspect_ratio():
    aspects = {style: width / height for style, (width, height) in plates.PLATE_SIZES.items()}
    for style in plates.PLATE_STYLES:
        for seed in range(6):
            image, boxes = _photo(seed)
            before = image.copy()
            drawn = swaps.swap(np.random.default_rng(seed), image, boxes, styles=(style,))
            (x0, y0, x1, y1), (a, b, c, d) = boxes[0], drawn[0]
            assert abs((c - a) / (d - b) - aspects[style]) < 0.05 * aspects[style]
            assert x1 - x0 <= c - a <= 1.12 * (x1 - x0) + 2  # never wider than the old plate
            assert a <= x0 and c >= x1
            if style == "us":  # taller than the Brazilian 3:1 plate: it hides it
                assert b <= y0 and d >= y1
            else:  # lower: a plate holder hides the rest of the old plate
                assert y0 < b and d < y1
            # No flat grey of the old plate left; nothing changed beyond its width and
            # the new plate's (or the holder's) height.
            assert (image[300:350, 250:400] == 128).all(axis=2).mean() < 0.2
            changed = np.any(image != before, axis=2)
            outside = changed.copy()
            outside[
                int(min(b, y0 - 0.06 * (y1 - y0))) - 1 : int(max(d, y1 + 0.06 * (y1 - y0))) + 2,
                int(a) : int(c),
            ] = False
            assert not outside.any()


def test_swaps_are_seeded_and_leave_the_image_size_and_edges_alone():
    image, boxes = _photo()
    first, again = image.copy(), image.copy()
    drawn = swaps.swap(np.random.default_rng(5), first, boxes)
    assert np.array_equal(drawn, swaps.swap(np.random.default_rng(5), again, boxes))
    assert np.array_equal(first, again)
    # A plate at the photo's edge: the new plate is drawn up to the edge, its box clipped.
    image, _ = _photo()
    edge = np.array([[560, 440, 640, 480]], np.float32)
    drawn = swaps.swap(np.random.default_rng(1), image, edge)
    assert drawn[0][2] <= 640 and drawn[0][3] <= 480 and drawn[0][0] <= 560
    # A box partly outside the photo (above and left of it): drawn where it is inside.
    image, _ = _photo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mean of an empty slice: the light is measured
        drawn = swaps.swap(np.random.default_rng(2), image, np.array([[-30, -10, 60, 20]]))
    assert drawn[0][0] == 0 and drawn[0][1] == 0 and drawn[0][2] >= 60
    # A box too small to draw over is returned as it was; the image unchanged.
    image, _ = _photo()
    before = image.copy()
    tiny = np.array([[10, 10, 11, 11]], np.float32)
    assert np.array_equal(swaps.swap(np.random.default_rng(1), image, tiny), tiny)
    assert np.array_equal(image, before)
