"""The starter (platelab.starter): save, load, SHA-256 check, applying it, the shipped one."""

import json

import numpy as np
import pytest

from platelab import model as model_lib
from platelab import starter, train
from train_helpers import LABELS, TINY_TRAINING, make_dataset

TINY = {"width": 0.35, "levels": [8, 16, 32, 64]}


def tiny_net(num_classes=2, width=0.35, seed=0):
    from platelab.tfimport import import_keras

    import_keras().utils.set_random_seed(seed)
    return model_lib.build_ssd(
        num_classes=num_classes,
        input_size=None,
        width=width,
        anchors=model_lib.generic_anchor_spec((8, 16, 32, 64)),
        weights=None,
        levels=(8, 16, 32, 64),
    )


def tiny_config(labels=LABELS):
    return {
        "input_size": 128,
        "infer_size": [192, 128],
        "resize": "letterbox",
        **TINY,
        "anchors": model_lib.generic_anchor_spec((8, 16, 32, 64)),
        "labels": list(labels),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("starter") / "starter"
    net = tiny_net()
    starter.save(folder, net, tiny_config(), {"command": "test", "chunks": []})
    return folder, net


def test_save_writes_float16_weights_with_their_sha256(saved):
    folder, net = saved
    provenance = json.loads((folder / starter.PROVENANCE_FILE).read_text())
    loaded = starter.load(folder)
    assert loaded.sha256 == provenance["weights"]["sha256"]
    assert provenance["weights"]["dtype"] == "float16"
    assert all(array.dtype == np.float16 for arrays in loaded.weights.values() for array in arrays)
    layer = next(layer for layer in model_lib.all_layers(net) if layer.name.endswith("_cls_out"))
    np.testing.assert_allclose(
        loaded.weights[layer.name][0].astype(np.float32),
        layer.get_weights()[0],
        rtol=1e-3,
        atol=1e-4,
    )


def test_a_corrupt_or_truncated_starter_is_refused_naming_file_and_sha256(saved, tmp_path):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(saved[0], folder)
    expected = json.loads((folder / starter.PROVENANCE_FILE).read_text())["weights"]["sha256"]
    data = (folder / starter.WEIGHTS_FILE).read_bytes()
    (folder / starter.WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(starter.StarterError) as caught:
        starter.load(folder)
    message = str(caught.value)
    assert str(folder / starter.WEIGHTS_FILE) in message and expected in message
    assert "\n" not in message
    (folder / starter.WEIGHTS_FILE).unlink()
    with pytest.raises(starter.StarterError, match="no such file"):
        starter.load(folder)


def test_apply_loads_every_layer_when_labels_match(saved):
    folder, net = saved
    fresh = tiny_net(seed=1)
    lines = []
    copied, reset = starter.apply(
        fresh, starter.load(folder), LABELS, 0.35, (8, 16, 32, 64), lines.append
    )
    assert reset == [] and copied > 50
    image = np.random.default_rng(0).integers(0, 255, (1, 128, 192, 3)).astype(np.float32)
    mine = fresh(image, training=False)["box_deltas"].numpy()
    theirs = net(image, training=False)["box_deltas"].numpy()
    np.testing.assert_allclose(mine, theirs, atol=0.05)
    assert lines and lines[0].startswith("init: starter") and "re-initialised" not in lines[0]


def test_other_labels_reinitialise_only_the_class_layers(saved):
    folder, _ = saved
    labels = ["car", "plate"]
    fresh = tiny_net(num_classes=len(labels), seed=2)
    before = {layer.name: layer.get_weights() for layer in model_lib.all_layers(fresh)}
    lines = []
    copied, reset = starter.apply(
        fresh, starter.load(folder), labels, 0.35, (8, 16, 32, 64), lines.append
    )
    assert reset and all(name.endswith("_cls_out") for name in reset)
    assert len(reset) == 4 and copied > 50
    for layer in model_lib.all_layers(fresh):
        if layer.name in reset:
            for a, b in zip(layer.get_weights(), before[layer.name], strict=True):
                np.testing.assert_array_equal(a, b)
    assert "differ from the dataset's" in lines[0] and "4 class layers re-initialised" in lines[0]


def test_a_subset_of_the_labels_keeps_their_class_outputs(saved):
    folder, net = saved
    fresh = tiny_net(num_classes=1, seed=2)
    lines = []
    copied, reset = starter.apply(
        fresh, starter.load(folder), ["license_plate"], 0.35, (8, 16, 32, 64), lines.append
    )
    assert reset == [] and "keep the starter's ['license_plate'] outputs" in lines[0]
    image = np.random.default_rng(1).integers(0, 255, (1, 128, 192, 3)).astype(np.float32)
    theirs = net(image, training=False)["class_logits"].numpy()
    mine = fresh(image, training=False)["class_logits"].numpy()
    # background and license_plate (the starter's classes 0 and 2), anchor by anchor
    np.testing.assert_allclose(mine, theirs[..., [0, 2]], atol=0.05)


def test_a_starter_of_another_architecture_is_refused_naming_the_mismatch(saved):
    fresh = tiny_net(width=0.5)
    with pytest.raises(starter.StarterError, match=r"width 0\.35 != 0\.5"):
        starter.apply(fresh, starter.load(saved[0]), LABELS, 0.5, (8, 16, 32, 64))
    with pytest.raises(starter.StarterError, match="levels"):
        starter.apply(tiny_net(), starter.load(saved[0]), LABELS, 0.35, (8, 16, 32))


def test_training_from_a_starter_folder(saved, tmp_path):
    dataset = make_dataset(tmp_path / "dataset", counts=(16, 4, 0))
    lines = []
    state = train.train(
        dataset,
        tmp_path / "run",
        dict(TINY_TRAINING, init=str(saved[0]), anchors_per_level=3, steps=4),
        progress=False,
        echo=lines.append,
    )
    assert state["status"] == "finished"
    assert any(line.startswith("init: starter") for line in lines)
    other = dict(TINY_TRAINING, init=str(saved[0]), width=0.5, steps=2)
    with pytest.raises(train.TrainingError, match="another architecture"):
        train.train(dataset, tmp_path / "run2", other, progress=False)


def test_the_shipped_starter_loads_and_reproduces_its_recorded_metrics(tmp_path):
    provenance = json.loads((starter.STARTER_DIR / starter.PROVENANCE_FILE).read_text())
    loaded = starter.load()
    assert loaded.sha256 == provenance["weights"]["sha256"]
    assert (starter.STARTER_DIR / starter.WEIGHTS_FILE).stat().st_size <= 20 * 1024 * 1024
    assert loaded.config["width"] == train.TrainConfig().width
    assert tuple(loaded.config["levels"]) == train.TrainConfig().levels
    card = (starter.STARTER_DIR / starter.CARD_FILE).read_text()
    assert provenance["weights"]["sha256"] in card and provenance["commit"] in card
    for seed in (4242, 987_654, 1_000_000):
        low, high = provenance["corpus"]["seeds"]
        assert not low <= seed <= high
    recorded = provenance["check_sample"]
    measured = starter.check_sample(loaded, tmp_path / "sample")
    assert measured["frames"] == recorded["frames"]
    for label, value in recorded["ap50"].items():
        assert measured["ap50"][label] == pytest.approx(value, abs=0.02), label


def test_the_card_shows_the_command_without_its_note():
    command = "platelab pretrain --work w --hours 0.5 --ship models/starter --note 'A stage: why.'"
    assert (
        starter._without_note(command)
        == "platelab pretrain --work w --hours 0.5 --ship models/starter"
    )
    assert (
        starter._without_note("platelab pretrain --note=x --quiet") == "platelab pretrain --quiet"
    )
    assert starter._without_note("platelab pretrain --quiet") == "platelab pretrain --quiet"
    assert starter._without_note("an 'unclosed quote") == "an 'unclosed quote"
    # The shipped card quotes its note once.
    provenance = json.loads((starter.STARTER_DIR / "provenance.json").read_text())
    card = (starter.STARTER_DIR / "MODEL_CARD.md").read_text()
    assert card.count(provenance["note"][:60]) == 1
