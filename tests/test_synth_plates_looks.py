"""Plate looks (platelab.synth.plates.vary_look): plain plates unchanged, looks
deterministic, sprite sizes kept, characters legible, every option drawable."""

import dataclasses
import hashlib
import itertools

import cv2
import numpy as np
import pytest

from platelab.synth import plates

PLAIN_SPRITES_SHA256 = "47f14be9accc60e4d7eb216ce3f12129f8b77f987c197717c49aa8e69b8541cb"
"""sha256 of 20 plain plates per style, computed before looks existed."""


def _looked(style, count, seed=0):
    plate_rng = np.random.default_rng(seed)
    look_rng = np.random.default_rng(seed + 1000)
    return [plates.vary_look(plates.random_plate(plate_rng, style), look_rng) for _ in range(count)]


def _contrast(image, design):
    """Grey-level gap between the characters and the background of the character band."""
    height, width = image.shape[:2]
    if design.style == "us":
        band = image[int(height * 0.42) : int(height * 0.62), int(width * 0.12) : int(width * 0.88)]
    else:
        band = image[int(height * 0.35) : int(height * 0.65), int(width * 0.2) : int(width * 0.95)]
    grey = np.sort(cv2.cvtColor(band, cv2.COLOR_BGR2GRAY).ravel().astype(np.float64))
    count = len(grey)
    if np.mean(design.ink) < np.mean(design.background):
        return grey[count // 2 :].mean() - grey[: count // 10].mean()
    return grey[-(count // 10) :].mean() - grey[: count // 2].mean()


def test_plain_sprites_are_unchanged():
    digest = hashlib.sha256()
    for style in plates.PLATE_STYLES:
        rng = np.random.default_rng(3)
        for _ in range(20):
            design = plates.random_plate(rng, style)
            assert design.look is None
            digest.update(plates.plate_sprite(design).tobytes())
    assert digest.hexdigest() == PLAIN_SPRITES_SHA256


@pytest.mark.parametrize("style", plates.PLATE_STYLES)
def test_looks_are_deterministic_and_hashable(style):
    first, second = _looked(style, 20), _looked(style, 20)
    assert first == second
    assert len({hash(design) for design in first}) == len(first)
    for a, b in zip(first[:5], second[:5], strict=True):
        assert np.array_equal(plates.plate_sprite(a), plates.plate_sprite(b))
    assert _looked(style, 20, seed=1) != first


@pytest.mark.parametrize("style", plates.PLATE_STYLES)
def test_look_keeps_the_plate_and_its_size(style):
    rng = np.random.default_rng(5)
    look_rng = np.random.default_rng(6)
    for _ in range(40):
        plain = plates.random_plate(rng, style)
        looked = plates.vary_look(plain, look_rng)
        assert looked.look is not None
        assert (looked.style, looked.text, looked.region) == (plain.style, plain.text, plain.region)
        assert looked.size == plain.size
        assert plates.plate_sprite(looked).shape == plates.plate_sprite(plain).shape
        assert plates.plate_sprite(looked).dtype == np.uint8
        top, side, bottom = looked.look.frame_widths
        assert 0 <= top <= 0.09 and 0 <= side <= 0.06 and 0 <= bottom <= 0.14


@pytest.mark.parametrize("style", plates.PLATE_STYLES)
def test_characters_stay_high_contrast(style):
    contrasts = [_contrast(plates.plate_sprite(design), design) for design in _looked(style, 200)]
    assert min(contrasts) > 60, sorted(contrasts)[:5]
    assert np.median(contrasts) > 120


@pytest.mark.parametrize("style", plates.PLATE_STYLES)
def test_random_looks_all_render(style):
    designs = _looked(style, 300, seed=11)
    for design in designs:
        image = plates.plate_sprite(design)
        assert image.shape[0] == plates.SPRITE_HEIGHT[style]
    looks = [design.look for design in designs]
    assert {look.frame for look in looks} == set(plates.FRAME_KINDS)
    assert any(look.dealer for look in looks)
    assert any(look.fade for look in looks) and any(look.dirt for look in looks)
    if style == "us":
        kinds = {kind for kind, _ in plates.US_BACKGROUND_KINDS}
        assert {look.background for look in looks} == kinds
        assert {look.name_font for look in looks} == set(plates.NAME_FONTS)
        assert {look.separator for look in looks} == set(plates.SEPARATORS)
        assert {len(look.stickers) for look in looks} == {0, 1, 2}
        assert {where for look in looks for where, _ in look.banners} == {"top", "bottom"}
        assert any(look.frame_top_text for look in looks)
        assert {look.emboss for look in looks} == {0, 1, 2}


def test_every_us_option_combination_renders():
    base = plates.random_plate(np.random.default_rng(2), "us")
    base = dataclasses.replace(base, text="ABC 123")
    look = plates.vary_look(base, np.random.default_rng(3)).look
    shape = plates.plate_sprite(base).shape
    tones = {
        "gradient": ((245, 215, 170), (250, 250, 248)),
        "sunset": ((90, 40, 150), (60, 150, 245), (60, 130, 210), (40, 70, 60)),
    }
    banner_sets = ((), (("top", (110, 40, 10)),), (("bottom", (40, 175, 235)),))
    for kind, frame, banners, separator, font in itertools.product(
        [kind for kind, _ in plates.US_BACKGROUND_KINDS],
        plates.FRAME_KINDS,
        banner_sets,
        plates.SEPARATORS,
        plates.NAME_FONTS,
    ):
        varied = dataclasses.replace(
            look,
            background=kind,
            tones=tones.get(kind, ((245, 215, 170), (200, 175, 150), (160, 195, 160))),
            banners=banners,
            separator=separator,
            name_font=font,
            frame=frame,
            frame_widths=(0.09, 0.06, 0.14) if frame else (0.0, 0.0, 0.0),
            dealer="AUTONATION" if frame else "",
            frame_top_text="SINCE 1968" if frame else "",
            stickers=(("tl", (0, 200, 255)), ("br", (60, 170, 40))),
            fade=0.35,
            dirt=0.3,
        )
        image = plates.plate_sprite(dataclasses.replace(base, look=varied))
        assert image.shape == shape


def test_unknown_style_is_refused():
    design = dataclasses.replace(plates.random_plate(np.random.default_rng(0), "us"), style="br")
    with pytest.raises(ValueError):
        plates.vary_look(design, np.random.default_rng(0))
