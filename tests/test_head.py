"""The detection head (platelab.head): assignment, loss, difficult boxes; input geometry."""

import numpy as np
import pytest

from platelab import head as head_lib
from platelab import model as model_lib
from platelab.tfimport import import_tensorflow


def _head(**config):
    return head_lib.DetectionHead(model_lib.generic_anchor_spec(), 2, config)


def test_ohem_loss_rewards_the_right_answer_and_mines_hard_negatives():
    head = _head(class_loss="ohem", box_loss="huber", box_weight=1.0)
    anchors = 50
    class_targets = np.zeros((1, anchors), np.int32)
    class_targets[0, :2] = [1, 2]
    class_targets[0, 2] = head_lib.IGNORE
    box_targets = np.zeros((1, anchors, 4), np.float32)
    box_targets[0, :2] = 0.5
    right = np.full((1, anchors, 3), [8.0, -8.0, -8.0], np.float32)
    right[0, 0] = [-8, 8, -8]
    right[0, 1] = [-8, -8, 8]
    wrong = np.zeros((1, anchors, 3), np.float32)
    good = head.loss(class_targets, box_targets, right, box_targets, None)
    bad = head.loss(class_targets, box_targets, wrong, np.zeros_like(box_targets), None)
    assert float(good[0]) < 1e-3 and float(good[1]) == pytest.approx(0.0)
    # Two positives and eight mined negatives, each log(3), over 2 positives.
    assert float(bad[0]) == pytest.approx(10 * np.log(3) / 2, rel=1e-4)
    assert float(bad[1]) == pytest.approx(2 * 4 * 0.5 * 0.25 / 2, rel=1e-4)
    ignored_wrong = right.copy()
    ignored_wrong[0, 2] = [-9, 9, -9]
    assert float(head.loss(class_targets, box_targets, ignored_wrong, box_targets, None)[0]) == (
        pytest.approx(float(good[0]), abs=1e-6)
    )


def test_focal_loss_counts_every_anchor_but_easy_ones_little():
    head = _head(class_loss="focal", box_loss="huber")
    anchors = 200
    class_targets = np.zeros((1, anchors), np.int32)
    class_targets[0, 0] = 1
    class_targets[0, 1] = head_lib.IGNORE
    box_targets = np.zeros((1, anchors, 4), np.float32)
    easy = np.full((1, anchors, 3), [6.0, -6.0, -6.0], np.float32)
    easy[0, 0] = [-6, 6, -6]
    hard = easy.copy()
    hard[0, 2:12] = [0.0, 0.0, 0.0]  # ten background anchors unsure
    easy_loss = float(head.loss(class_targets, box_targets, easy, box_targets, None)[0])
    hard_loss = float(head.loss(class_targets, box_targets, hard, box_targets, None)[0])
    assert easy_loss < 1e-4
    # Each unsure anchor: (1 - 1/3)^2 * log 3, over one positive.
    assert hard_loss == pytest.approx(10 * (2 / 3) ** 2 * np.log(3), rel=1e-3)
    ignored = easy.copy()
    ignored[0, 1] = [-9, 9, -9]
    assert float(head.loss(class_targets, box_targets, ignored, box_targets, None)[0]) == (
        pytest.approx(easy_loss, abs=1e-6)
    )


def test_giou_loss_is_zero_on_the_target_and_grows_with_the_error():
    head = _head(box_loss="giou")
    shape = (64, 64)
    boxes = np.array([[0.2, 0.2, 0.6, 0.5]], np.float32)
    class_targets, box_targets = head.encode(boxes, [1], [False], shape)
    class_targets, box_targets = np.asarray(class_targets)[None], np.asarray(box_targets)[None]
    logits = np.zeros((*class_targets.shape, 3), np.float32)
    exact = float(head.loss(class_targets, box_targets, logits, box_targets, shape)[1])
    near = float(head.loss(class_targets, box_targets, logits, box_targets + 0.5, shape)[1])
    far = float(head.loss(class_targets, box_targets, logits, box_targets + 3.0, shape)[1])
    assert exact == pytest.approx(0.0, abs=1e-5)
    assert 0 < near < far


@pytest.mark.parametrize("assigner", ["atss", "iou"])
def test_difficult_boxes_are_ignored_not_negative(assigner):
    head = _head(assigner=assigner)
    boxes = np.array([[0.1, 0.1, 0.4, 0.4], [0.6, 0.6, 0.9, 0.75]], np.float32)
    targets, _ = head.encode(boxes, [1, 2], [False, True], (96, 96))
    targets = np.asarray(targets)
    assert (targets == 1).sum() >= 1
    assert (targets == 2).sum() == 0
    assert (targets == head_lib.IGNORE).sum() >= 1


def test_atss_gives_a_tiny_plate_several_positives_where_iou_matching_gives_one():
    shape = (320, 320)
    plate = np.array([[100, 100, 120, 108]], np.float32) / 320  # 20x8 px
    atss, _ = _head(assigner="atss").encode(plate, [2], [False], shape)
    iou, _ = _head(assigner="iou").encode(plate, [2], [False], shape)
    assert (np.asarray(iou) == 2).sum() == 1
    assert (np.asarray(atss) == 2).sum() >= 3


def test_no_boxes_gives_only_background():
    targets, deltas = _head().encode(np.zeros((0, 4), np.float32), [], [], (64, 128))
    assert not np.asarray(targets).any() and not np.asarray(deltas).any()


def test_encoded_targets_decode_back_to_their_boxes():
    tf = import_tensorflow()
    head = _head()
    shape = (192, 320)
    boxes = np.array([[0.1, 0.2, 0.3, 0.5], [0.5, 0.5, 0.56, 0.54]], np.float32)
    targets, deltas = head.encode(boxes, [1, 2], [False, False], shape)
    decoded = head_lib.decode_deltas(tf.constant(deltas), tf.constant(head.anchors(shape)))
    decoded, targets = np.asarray(decoded), np.asarray(targets)
    np.testing.assert_allclose(
        decoded[targets == 1], np.repeat(boxes[:1], (targets == 1).sum(), 0), atol=1e-5
    )
    np.testing.assert_allclose(
        decoded[targets == 2], np.repeat(boxes[1:], (targets == 2).sum(), 0), atol=1e-5
    )


def test_anchors_follow_a_rectangular_input_and_match_the_model():
    spec = model_lib.generic_anchor_spec((8, 16, 32, 64))
    net = model_lib.build_ssd(2, None, 0.35, spec, weights=None)
    for shape in [(320, 320), (192, 320)]:
        anchors = model_lib.generate_anchors(spec, shape)
        outputs = net(np.zeros((1, *shape, 3), np.float32))
        assert outputs["class_logits"].shape[1] == len(anchors)
        # The same anchor shape is the same number of pixels whatever the input.
        widths_px = (anchors[:, 2] - anchors[:, 0]) * shape[1]
        smallest = min(w for level in spec["shapes"] for w, _ in level)
        assert widths_px.min() == pytest.approx(smallest, rel=1e-5)


def test_background_prior_starts_every_anchor_mostly_background():
    spec = model_lib.generic_anchor_spec((8, 16))
    net = model_lib.build_ssd(2, None, 0.35, spec, weights=None, levels=(8, 16))
    head_lib.set_background_prior(net, 2)
    logits = np.asarray(net(np.zeros((1, 64, 64, 3), np.float32))["class_logits"])
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert np.median(probabilities[..., 0]) > 0.95


def test_letterbox_geometry_round_trip_and_padding():
    geometry = model_lib.InputGeometry.for_frames(1280, 720, 960)
    assert (geometry.width, geometry.height) == (960, 576)
    image = np.full((720, 1280, 3), 100, np.uint8)
    prepared = geometry.prepare(image)
    assert prepared.shape == (576, 960, 3)
    assert prepared[:540].min() == 100 and prepared[540:].max() == model_lib.PAD_VALUE
    boxes = np.array([[128, 72, 640, 360]], np.float32)
    network = geometry.to_network(boxes, 1280, 720)
    np.testing.assert_allclose(network, [[96 / 960, 54 / 576, 480 / 960, 270 / 576]], rtol=1e-6)
    np.testing.assert_allclose(geometry.to_image(network, 1280, 720), boxes, rtol=1e-5)
    # A frame of another aspect ratio is letterboxed, not stretched.
    square = geometry.to_image([[0, 0, 576 / 960, 1.0]], 500, 500)
    np.testing.assert_allclose(square, [[0, 0, 500, 500]], rtol=1e-5)


def test_a_margin_pads_the_frame_all_round_and_keeps_its_scale():
    """``infer_margin`` 32: a 1280x720 frame at 1152 px goes into 1216x768, 32 px from
    the top left, at scale 0.9 as without a margin; boxes go there and back."""
    geometry = model_lib.InputGeometry.for_frames(1280, 720, 1152, margin=32)
    plain = model_lib.InputGeometry.for_frames(1280, 720, 1152)
    assert (geometry.width, geometry.height, geometry.margin) == (1216, 768, 32)
    assert (plain.width, plain.height) == (1152, 704)
    assert geometry.scale(1280, 720) == plain.scale(1280, 720) == (0.9, 0.9)
    assert geometry.content_size(1280, 720) == (1152, 648)
    image = np.full((720, 1280, 3), 100, np.uint8)
    prepared = geometry.prepare(image)
    assert prepared.shape == (768, 1216, 3)
    assert prepared[32:680, 32:1184].min() == 100
    padding = np.ones(prepared.shape[:2], bool)
    padding[32:680, 32:1184] = False
    assert (prepared[padding] == model_lib.PAD_VALUE).all()
    np.testing.assert_array_equal(geometry.content(prepared, 1280, 720), prepared[32:680, 32:1184])
    boxes = np.array([[0, 0, 1280, 720], [128, 72, 640, 360]], np.float32)
    network = geometry.to_network(boxes, 1280, 720)
    np.testing.assert_allclose(network[0], [32 / 1216, 32 / 768, 1184 / 1216, 680 / 768])
    np.testing.assert_allclose(geometry.to_image(network, 1280, 720), boxes, rtol=1e-5)
    # A detection in the margin clips to nothing on the image and is dropped.
    in_margin = geometry.to_image([[0.0, 0.0, 20 / 1216, 1.0]], 1280, 720)
    assert not geometry.on_image(in_margin).any()
    assert "32 px from the top left" in geometry.describe()
    assert geometry == model_lib.InputGeometry.from_config(
        {"infer_size": [1216, 768], "resize": "letterbox", "infer_margin": 32}
    )
    assert plain == model_lib.InputGeometry.from_config({"infer_size": [1152, 704]})
    # Twice the margin a multiple of the largest stride, so that the frame keeps its size.
    with pytest.raises(ValueError, match="infer_margin 20: twice it must be a multiple"):
        model_lib.InputGeometry.for_frames(1280, 720, 1152, margin=20)
    with pytest.raises(ValueError, match="margin 400 does not fit a 1216x768 input"):
        model_lib.InputGeometry(1216, 768, margin=400)


def test_a_capped_scale_places_a_smaller_image_at_its_own_size():
    """``max_scale`` 1.0: an image smaller than the input is not enlarged; its boxes go
    there and back; a larger frame is shrunk as without the cap."""
    plain = model_lib.InputGeometry.for_frames(1280, 720, 960, margin=32)
    geometry = plain.capped(1.0)
    assert (geometry.width, geometry.height, geometry.max_scale) == (1024, 640, 1.0)
    assert geometry != plain and geometry == model_lib.InputGeometry.from_config(
        {"infer_size": [1024, 640], "infer_margin": 32, "infer_max_scale": 1.0}
    )
    assert plain.scale(576, 432) == pytest.approx((4 / 3, 4 / 3))  # 576 px / 432
    assert geometry.scale(576, 432) == (1.0, 1.0)
    assert geometry.scale(1280, 720) == plain.scale(1280, 720) == (0.75, 0.75)
    assert geometry.content_size(576, 432) == (576, 432)
    image = np.random.default_rng(5).integers(0, 256, (432, 576, 3), np.uint8)
    prepared = geometry.prepare(image)
    np.testing.assert_array_equal(prepared[32:464, 32:608], image)
    padding = np.ones(prepared.shape[:2], bool)
    padding[32:464, 32:608] = False
    assert (prepared[padding] == model_lib.PAD_VALUE).all()
    boxes = np.array([[100, 200, 300, 260]], np.float32)
    network = geometry.to_network(boxes, 576, 432)
    np.testing.assert_allclose(network, [[132 / 1024, 232 / 640, 332 / 1024, 292 / 640]])
    np.testing.assert_allclose(geometry.to_image(network, 576, 432), boxes, rtol=1e-5)
    assert "never scaled by more than 1" in geometry.describe()
    assert "scale at most 1" in repr(geometry)
    assert "never scaled" not in plain.describe()
    with pytest.raises(ValueError, match="max_scale 1.0: a largest scale needs the letterbox"):
        model_lib.InputGeometry(320, 320, "squash", max_scale=1.0)
    with pytest.raises(ValueError, match="must be above 0"):
        plain.capped(0.0)


@pytest.mark.parametrize("size", [(1280, 720), (500, 500), (333, 200)])
@pytest.mark.parametrize("margin", [0, 32])
def test_the_mirror_of_a_prepared_input_is_the_prepared_mirror_image(size, margin):
    """What error analysis scores with ``tta: flip`` from the stored inputs equals what
    the detector sees when it prepares the mirror image itself."""
    width, height = size
    geometry = model_lib.InputGeometry.for_frames(1280, 720, 960, margin=margin)
    image = np.random.default_rng(3).integers(0, 256, (height, width, 3), np.uint8)
    mirrored = geometry.mirror(geometry.prepare(image), width, height)
    np.testing.assert_allclose(mirrored, geometry.prepare(image[:, ::-1]), atol=1.0)
    inner_w, inner_h = geometry.content_size(width, height)
    assert (mirrored[:, margin + inner_w :] == model_lib.PAD_VALUE).all()
    assert (mirrored[margin + inner_h :] == model_lib.PAD_VALUE).all()
    assert (mirrored[:margin] == model_lib.PAD_VALUE).all()
    assert (mirrored[:, :margin] == model_lib.PAD_VALUE).all()
    batch = np.stack([geometry.prepare(image)] * 2)  # a batch of one size at once
    np.testing.assert_array_equal(geometry.mirror(batch, width, height)[1], mirrored)
    square = model_lib.InputGeometry.from_config({"input_size": 64})
    small = image[:64, :64]
    np.testing.assert_array_equal(
        square.mirror(square.prepare(small), 64, 64), square.prepare(small[:, ::-1])
    )


def test_squash_geometry_is_the_earlier_square_input():
    geometry = model_lib.InputGeometry.from_config({"input_size": 320})
    assert geometry.mode == "squash" and geometry.shape == (320, 320)
    np.testing.assert_allclose(
        geometry.to_image([[0.5, 0.5, 1, 1]], 960, 540), [[480, 270, 960, 540]]
    )


def test_an_input_size_off_the_largest_stride_is_refused_naming_valid_sizes():
    with pytest.raises(
        ValueError, match="not a multiple of the largest stride 64: use 960 or 1024"
    ):
        model_lib.check_input_side(1000)
    with pytest.raises(ValueError, match="use 960 or 1024"):
        model_lib.InputGeometry.for_frames(1920, 1080, 1000)


@pytest.mark.parametrize("margin, max_scale", [(0, None), (32, None), (32, 1.0)])
def test_in_graph_letterbox_equals_the_numpy_one(margin, max_scale):
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    geometry = model_lib.InputGeometry(
        320 + 2 * margin, 192 + 2 * margin, margin=margin, max_scale=max_scale
    )
    for height, width in [(540, 960), (720, 1280), (300, 300), (100, 400), (90, 120)]:
        image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        in_graph = model_lib.letterbox_images_tf(tf.constant(image[None]), geometry).numpy()[0]
        np.testing.assert_allclose(in_graph, geometry.prepare(image), atol=1.0)
