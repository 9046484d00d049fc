"""Pretraining (platelab.pretrain): seed discipline, the corpus, chunks that resume."""

import json

import pytest

from platelab import cli, pretrain, synth

TINY_TRAINING = {
    "input_size": 128,
    "infer_size": 192,
    "width": 0.35,
    "batch_size": 4,
    "learning_rate": 0.003,
    "warmup_steps": 2,
    "log_every": 2,
    "eval_every": 4,
    "checkpoint_every": 2,
    "init": "none",
}


def tiny_plan(**overrides):
    values = dict(
        videos=6,
        seconds=1.0,
        fps=2.0,
        seed=30_000,
        val_fraction=0.2,
        hours=0.02,
        heldout_videos=1,
        training=TINY_TRAINING,
    )
    values.update(overrides)
    return pretrain.PretrainConfig(**values)


@pytest.mark.parametrize(
    ("seed", "videos", "reserved"),
    [(4242, 6, 4242), (987_600, 600, 987_654), (999_990, 600, 1_000_000)],
)
def test_a_corpus_touching_an_evaluation_seed_is_refused_naming_it(seed, videos, reserved):
    with pytest.raises(synth.ReservedSeedError, match=f"seed {reserved} is reserved"):
        tiny_plan(seed=seed, videos=videos).check()


def test_the_command_refuses_a_reserved_seed_in_one_line(tmp_path, capsys):
    status = cli.main(["pretrain", "--work", str(tmp_path / "w"), "--seed", "999990"])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert error.count("\n") == 0 and "seed 1000000 is reserved for evaluation" in error
    assert not (tmp_path / "w" / "corpus").exists()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny plan trained to its end: the first chunk in a process of its own, as
    ``platelab pretrain`` runs them, then chunks in this process."""
    folder = tmp_path_factory.mktemp("pretrain") / "first"
    plan = pretrain.start(folder, tiny_plan(hours=0.01))
    first = pretrain.run_chunk_in_process(folder, minutes=0.05, progress=False)
    second = pretrain.run_chunk(folder, minutes=0.05, progress=False)
    last = second  # a slow machine may have spent the plan's minutes already
    while not pretrain.plan_done(folder):
        last = pretrain.run_chunk(folder, minutes=1.0, progress=False)
    return folder, plan, (first, second, last)


def test_chunks_resume_the_run_and_log_held_out_scores(pretrained):
    folder, plan, (first, second, last) = pretrained
    corpus = json.loads((folder / "corpus" / "corpus.json").read_text())
    # six videos of 1 s at 2 fps: 12 frames, less any dead feed
    assert 6 <= corpus["frames"] <= 12
    assert corpus["parameters"]["seeds"] == [30_000, 30_000]
    assert first.status == "paused" and first.steps > 0
    assert set(first.heldout["ap50"]) == {"vehicle", "license_plate"}
    assert first.heldout["seed"] == 4242 and first.heldout["frames"] == 10
    assert second.chunk == 2 and second.steps > first.steps
    assert second.images_seen == second.steps * TINY_TRAINING["batch_size"]
    logged = [row["steps"] for row in json.loads((folder / "chunks.json").read_text())]
    assert logged[:2] == [first.steps, second.steps] and logged[-1] == last.steps
    assert last.status == "time_limited" and last.minutes >= 60 * plan.hours - 0.05


def test_continue_adds_hours_to_a_plan_and_refuses_a_folder_without_one(tmp_path):
    folder = tmp_path / "pretrain"
    pretrain.start(folder, tiny_plan())
    extended = pretrain.extend(folder, 0.01)
    assert extended.hours == pytest.approx(0.02 + 0.01) and not pretrain.plan_done(folder)
    assert pretrain.load_plan(folder).hours == pytest.approx(0.03)
    with pytest.raises(pretrain.PretrainError, match="no pretraining to continue"):
        pretrain.extend(tmp_path / "elsewhere", 1.0)


def test_a_run_begun_before_min_visible_goes_on_as_it_began(tmp_path):
    folder = tmp_path / "pretrain"
    plan = pretrain.start(folder, tiny_plan())
    assert plan.train_config(folder).min_visible == 0.5  # no run yet: today's default
    (folder / "run").mkdir()
    stored = {"training": dict(TINY_TRAINING), "input_size": 128, "width": 0.35}
    stored.update(levels=[8, 16, 32, 64], anchors=[], labels=["vehicle", "license_plate"])
    (folder / "run" / "config.json").write_text(json.dumps(stored))
    assert plan.train_config(folder).min_visible == 0.0  # its run began before the key
    stored["training"]["min_visible"] = 0.5
    (folder / "run" / "config.json").write_text(json.dumps(stored))
    assert plan.train_config(folder).min_visible == 0.5
    # A plan that sets the key itself keeps it (a mismatch, then, the run refuses).
    del stored["training"]["min_visible"]
    (folder / "run" / "config.json").write_text(json.dumps(stored))
    assert (
        tiny_plan(training=dict(TINY_TRAINING, min_visible=0.3)).train_config(folder).min_visible
        == 0.3
    )


def test_another_corpus_in_the_same_folder_is_refused(tmp_path):
    folder = tmp_path / "pretrain"
    pretrain.start(folder, tiny_plan())
    with pytest.raises(pretrain.PretrainError, match="another corpus or recipe"):
        pretrain.start(folder, tiny_plan(videos=12))
    assert pretrain.start(folder, tiny_plan(hours=0.5)).hours == 0.5


def test_a_corpus_may_add_the_traffic_camera_and_keeps_the_six_scenes_it_had(tmp_path):
    plain = tiny_plan(seconds=0.5)
    wider = tiny_plan(seconds=0.5, vantages=(*synth.VANTAGES, "traffic_camera"))
    assert "vantages" not in plain.corpus_parameters()  # the markers of earlier corpora hold
    assert wider.corpus_parameters()["vantages"][-1] == "traffic_camera"
    assert (plain.shards, wider.shards) == (1, 1) and wider.corpus_parameters()["videos"] == 7
    folder = tmp_path / "pretrain"
    pretrain.start(folder, wider)
    assert pretrain.load_plan(folder).vantages == wider.vantages
    shards = {}
    for name, plan in (("plain", plain), ("wider", wider)):
        (tmp_path / name).mkdir()
        shards[name] = pretrain._render_shard((0, plan, str(tmp_path / name)))
    assert {info["vantage"] for _, _, info in shards["wider"]} == {
        *synth.VANTAGES,
        "traffic_camera",
    }
    assert [
        (image.name, sha)
        for image, sha, info in shards["wider"]
        if info["vantage"] != "traffic_camera"
    ] == [(image.name, sha) for image, sha, _ in shards["plain"]]
    with pytest.raises(pretrain.PretrainError, match="vantages must be distinct names"):
        tiny_plan(vantages=("overpass", "helicopter")).check()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["pretrain", "--work", str(tmp_path / "w"), "--vantages", "overpass,nope"])
    assert stopped.value.code == 2 and not (tmp_path / "w").exists()


def test_a_corpus_may_ask_for_scene_details_and_plans_from_before_load_without(tmp_path):
    plain = tiny_plan(seconds=0.5)
    detailed = tiny_plan(seconds=0.5, details=("badges", "osd"))
    assert plain.details == () and "details" not in plain.corpus_parameters()
    assert detailed.corpus_parameters()["details"] == ["osd", "badges"]  # in DETAILS' order
    folder = tmp_path / "pretrain"
    pretrain.start(folder, detailed)
    assert pretrain.load_plan(folder).details == ("badges", "osd")
    with pytest.raises(pretrain.PretrainError, match="another corpus or recipe"):
        pretrain.start(folder, plain)
    # A plan saved before details existed has no such key: none.
    document = json.loads((folder / "pretrain.json").read_text())
    del document["plan"]["details"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "pretrain.json").write_text(json.dumps(document))
    old = pretrain.load_plan(tmp_path / "old")
    assert old.details == () and old.corpus_parameters() == plain.corpus_parameters()
    with pytest.raises(pretrain.PretrainError, match="details must be distinct names of osd"):
        tiny_plan(details=("osd", "fog")).check()
    # Lettering changes pixels, never the boxes.
    shards = {}
    for name, plan in (("plain", plain), ("badges", tiny_plan(seconds=0.5, details=["badges"]))):
        (tmp_path / name).mkdir()
        shards[name] = pretrain._render_shard((0, plan, str(tmp_path / name)))
    assert [(image.name, image.objects) for image, _, _ in shards["badges"]] == [
        (image.name, image.objects) for image, _, _ in shards["plain"]
    ]
    assert [sha for _, sha, _ in shards["badges"]] != [sha for _, sha, _ in shards["plain"]]


def test_the_command_takes_scene_details_as_it_takes_vantages(tmp_path, capsys, monkeypatch):
    parser = cli._build_parser()
    assert parser.parse_args(["pretrain", "--details", "osd, badges"]).details == (
        "osd",
        "badges",
    )
    assert parser.parse_args(["pretrain"]).details is None
    with pytest.raises(SystemExit) as stopped:
        cli.main(["pretrain", "--work", str(tmp_path / "w"), "--details", "osd,fog"])
    assert stopped.value.code == 2 and not (tmp_path / "w").exists()
    assert "unknown scene detail(s) fog: expected some of osd, badges" in capsys.readouterr().err
    monkeypatch.setattr(pretrain, "run_chunk_in_process", lambda *args, **kwargs: None)
    folder = str(tmp_path / "w")
    assert cli.main(["pretrain", "--work", folder, "--details", "badges", "--quiet"]) == 0
    assert pretrain.load_plan(folder).details == ("badges",)
    assert cli.main(["pretrain", "--work", folder, "--quiet"]) == 0  # resumed as planned
    capsys.readouterr()
    assert cli.main(["pretrain", "--work", folder, "--details", "osd", "--quiet"]) == 2
    assert "another corpus or recipe" in capsys.readouterr().err
    assert pretrain.load_plan(folder).details == ("badges",)


def test_a_plan_can_continue_a_starter_and_ship_its_lineage(pretrained, tmp_path, monkeypatch):
    from platelab import starter

    monkeypatch.setattr(
        starter,
        "CHECK_SAMPLE",
        {"seed": 4242, "videos": 1, "seconds": 0.5, "fps": 4.0, "size": (192, 128)},
    )
    parent = starter.ship(pretrained[0], tmp_path / "starter-a", command="test first")
    parent_sha = starter.load(parent).sha256
    assert json.loads((parent / "provenance.json").read_text())["training"]["from"] == (
        "random weights"
    )

    second = tmp_path / "second"
    training = {**TINY_TRAINING, "input_size": 192, "init": str(parent)}
    plan = pretrain.start(second, tiny_plan(training=training))
    # the parent is copied: changing the original later cannot change this plan
    (parent / "weights.npz").write_bytes(b"replaced")
    assert plan.train_config(second).init == str(second / pretrain.PARENT_DIR)
    pretrain.run_chunk(second, minutes=0.05, progress=False)
    run_config = json.loads((second / "run" / "config.json").read_text())
    assert run_config["training"]["init"] == str(second / pretrain.PARENT_DIR)
    child = starter.ship(second, tmp_path / "starter-b", command="test second")
    provenance = json.loads((child / "provenance.json").read_text())
    training_record = provenance["training"]
    assert training_record["from"] == f"starter {parent_sha}"
    assert training_record["recipe"]["init"] == f"starter {parent_sha}"  # no machine path
    assert provenance["parent"]["sha256"] == parent_sha
    assert provenance["parent"]["provenance"]["command"] == "test first"
    assert training_record["cpu_hours_total"] == pytest.approx(
        training_record["cpu_hours"] + provenance["parent"]["cpu_hours_total"], abs=0.002
    )
    assert parent_sha[:12] in (child / "MODEL_CARD.md").read_text()


def test_a_plan_continuing_a_corrupt_starter_is_refused(tmp_path):
    from platelab import starter

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("weights.npz", "config.json"):
        (broken / name).write_text("{}")
    (broken / "provenance.json").write_text(json.dumps({"weights": {"sha256": "0" * 64}}))
    training = {**TINY_TRAINING, "init": str(broken)}
    with pytest.raises(starter.StarterError, match="is not the expected 0000"):
        pretrain.start(tmp_path / "w", tiny_plan(training=training))
    assert not (tmp_path / "w" / pretrain.PARENT_DIR).exists()
    assert pretrain.load_plan(tmp_path / "w") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [("nosuch=1", "unknown training parameter(s): nosuch"), ("input_size=abc", "training: ")],
)
def test_a_bad_training_value_is_refused_in_one_line(tmp_path, capsys, value, message):
    status = cli.main(["pretrain", "--work", str(tmp_path / "w"), "--train", value])
    error = capsys.readouterr().err.strip()
    assert status == 2 and error.count("\n") == 0 and message in error
    assert pretrain.load_plan(tmp_path / "w") is None
