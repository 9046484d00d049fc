"""Hard negatives pasted into real photos (platelab.synth.negatives): lettering,
stickers, lit lamps and time stamps, clear of every annotated box, never annotated."""

import numpy as np
import pytest

from platelab.synth import negatives


def _photo(seed=0, width=640, height=480):
    """A noisy photo with two boxes (a car and its plate) painted flat."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    boxes = np.array([[200, 150, 460, 400], [290, 330, 370, 360]], np.float32)
    image[150:400, 200:460] = (90, 90, 150)
    image[330:360, 290:370] = (245, 245, 245)
    return image, boxes


def _inside(image, box):
    x0, y0, x1, y1 = (int(value) for value in box)
    return image[y0:y1, x0:x1]


@pytest.mark.parametrize("kind", negatives.KINDS)
def test_each_kind_is_drawn_clear_of_the_boxes(kind):
    drawn = 0
    for seed in range(12):
        image, boxes = _photo(seed)
        before = image.copy()
        placed = negatives.paste(np.random.default_rng(seed), image, boxes, kinds=(kind,))
        assert {name for name, _ in placed} <= {kind}
        for box in boxes:  # every annotated pixel as it was
            assert np.array_equal(_inside(image, box), _inside(before, box))
        for _, (x0, y0, x1, y1) in placed:
            assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
            for box in boxes:
                assert x1 <= box[0] or box[2] <= x0 or y1 <= box[1] or box[3] <= y0
            assert not np.array_equal(image[y0:y1, x0:x1], before[y0:y1, x0:x1])
        changed = np.any(image != before, axis=2)
        ys, xs = np.nonzero(changed)
        for y, x in zip(ys[::97], xs[::97], strict=True):  # every change is inside a paste
            assert any(x0 <= x < x1 and y0 <= y < y1 for _, (x0, y0, x1, y1) in placed)
        drawn += len(placed)
    assert drawn >= 12


def test_one_time_stamp_goes_in_the_corners_and_the_rest_at_the_asked_widths():
    for seed in range(10):
        image, boxes = _photo(seed)
        placed = negatives.paste(np.random.default_rng(seed), image, boxes, count=(3, 3))
        stamps = [box for kind, box in placed if kind == "stamp"]
        assert len(stamps) <= 2  # one stamp (its camera name may sit in another corner)
        for x0, y0, x1, y1 in stamps:  # within a few per cent of two frame edges
            near_x = min(x0, image.shape[1] - x1) <= 0.03 * image.shape[1]
            near_y = min(y0, image.shape[0] - y1) <= 0.03 * image.shape[0]
            assert near_x and near_y
        for kind, (x0, _, x1, _) in placed:
            if kind != "stamp":
                low, high = negatives.FENCE_WIDTH if kind == "fence" else negatives.WIDTH
                assert low - 0.02 <= (x1 - x0) / image.shape[1] <= high + 0.01


def test_the_same_generator_pastes_the_same_and_another_pastes_otherwise():
    image, boxes = _photo()
    first, second, third = image.copy(), image.copy(), image.copy()
    negatives.paste(np.random.default_rng(4), first, boxes)
    negatives.paste(np.random.default_rng(4), second, boxes)
    negatives.paste(np.random.default_rng(5), third, boxes)
    assert np.array_equal(first, second) and not np.array_equal(first, third)


def test_a_photo_with_no_room_is_left_as_it_was():
    image, _ = _photo()
    before = image.copy()
    whole = np.array([[0, 0, image.shape[1], image.shape[0]]], np.float32)
    assert negatives.paste(np.random.default_rng(0), image, whole) == []
    assert np.array_equal(image, before)


def test_an_unknown_kind_is_refused_naming_it():
    with pytest.raises(ValueError, match="unknown distractor kind 'logo'"):
        negatives.texture(np.random.default_rng(0), "logo", (0, 0, 0))


def test_a_fence_texture_shows_its_bars_and_the_background_between_them():
    rng = np.random.default_rng(2)
    fence = negatives.fences.random_fence(rng, 3.0)
    while fence.kind == "chainlink":
        fence = negatives.fences.random_fence(rng, 3.0)
    drawn = negatives.fences.fence_texture(fence, 40.0)
    assert drawn.shape == (round(fence.top * 40), 120, 4)
    rows = drawn[drawn.shape[0] // 5 : 4 * drawn.shape[0] // 5, :, 3]
    middle = rows[np.argmin(rows.astype(int).sum(axis=1))]  # across the bars, off the rails
    bars = round(3.0 / fence.spacing)
    assert middle.max() == 255 and middle.min() == 0
    rises = int(np.sum((middle[1:] >= 128) & (middle[:-1] < 128)))
    assert bars - 3 <= rises <= bars + 1
