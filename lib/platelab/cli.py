"""The ``platelab`` command line.

Every subcommand reports bad input as one line, ``platelab: error: ...``, and
exits non-zero; ``--debug`` shows the traceback instead. Every path argument
is relative to the current directory, as a shell user means it
(:func:`platelab.paths.from_cwd`); paths inside parameter files stay
relative to the project root, as in the notebooks.
"""

import argparse
import logging
import sys
from pathlib import Path

from platelab import __version__, detector, tta
from platelab.argtypes import key_value, positive
from platelab.exceptions import PlatelabError
from platelab.paths import from_cwd

logger = logging.getLogger(__name__)


class CommandError(PlatelabError):
    """A bad command line the parser cannot catch (printed as one line, exit status 2)."""


def main(argv=None):
    """Entry point of the ``platelab`` console script and ``python -m platelab``."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("platelab: interrupted", file=sys.stderr)
        return 130
    except (PlatelabError, OSError, ValueError) as error:
        # Every platelab error, and a file or value the system refuses, is the user's to
        # fix: its message alone.
        if args.debug:
            raise
        return _fail(_one_line(error))
    except Exception as error:  # noqa: BLE001 - a bug: its type, and where to look
        if args.debug:
            raise
        return _fail(
            f"{type(error).__name__}: {_one_line(error)} (rerun with --debug for the traceback)"
        )


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _fail(text):
    print(f"platelab: error: {text}", file=sys.stderr)
    return 2


def _run(args):
    from platelab import runner

    run = runner.run_chain(
        profile=args.profile,
        params_file=args.params,
        stages=args.stages,
        run_id=args.run_id,
        notebooks_dir=args.notebooks,
        reports_dir=args.reports,
        show_code=args.show_code,
        kernel_name=args.kernel,
    )
    return 0 if run["status"] == "ok" else 1


def _stages(args):
    from platelab import config

    for stage in config.discover_stages(args.notebooks):
        print(stage.name)
        for name, info in config.declared_parameters(stage.path).items():
            print(f"    {name}: {info['type']} = {info['default']}  # {info['help']}")
    return 0


def _synthesize(args):
    width, height = _parse_size(args.size)
    from platelab import synth

    manifest = synth.synthesize(
        args.out,
        videos=args.videos,
        seconds=args.seconds,
        fps=args.fps,
        size=(width, height),
        seed=args.seed,
        vantages=args.vantages,
        progress=not args.quiet,
        purpose=args.purpose,
    )
    frames = sum(video["frames"] for video in manifest["videos"])
    print(f"wrote {len(manifest['videos'])} videos, {frames} frames, to {args.out}")
    return 0


def _collect(args):
    from platelab.collect import frames

    manifest = frames.sample(
        args.inputs,
        args.out,
        fps=args.fps,
        cut_static=args.cut_static,
        workers=args.workers,
        progress=not args.quiet,
    )
    for problem in manifest["problems"]:
        print(f"skipped: {problem}", file=sys.stderr)
    used = sum(source.get("status") == "ok" for source in manifest["sources"])
    print(f"wrote {len(manifest['frames'])} frames from {used} source(s) to {args.out}")
    return 0 if used or not manifest["sources"] else 1


def _curate(args):
    from platelab import curate

    result = curate.curate(
        args.inputs,
        args.out,
        threshold=args.threshold,
        drop_empty=args.drop_empty,
        progress=not args.quiet,
    )
    for problem in result["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    reasons = {}
    for entry in result["dropped"]:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    dropped = ", ".join(
        f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(reasons.items())
    )
    print(
        f"kept {len(result['kept'])} of {len(result['kept']) + len(result['dropped'])} images"
        f"{' (dropped: ' + dropped + ')' if dropped else ''}; see {args.out}/curated.json"
    )
    return 0


def _doctor(args):
    from platelab import doctor

    problems = doctor.report(print)
    return 1 if problems else 0


def _train(args):
    from platelab import config, train

    values = {}
    if args.profile or args.params:
        params_path = args.params if args.params else config.profile_path(args.profile)
        params = config.load_params(params_path)
        resolved = config.resolve_params(params, config.discover_stages())
        values = train.config_values(resolved.get("06_train", {}))
    overrides = {
        "init": args.init,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "width": args.width,
        "input_size": args.input_size,
        "infer_size": args.infer_size,
        "infer_margin": args.infer_margin,
        "infer_max_scale": args.infer_max_scale,
        "crop_training": False if args.whole_frames else None,
        "max_minutes": args.max_minutes,
        "keep": args.keep,
        "tta": args.tta,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
    }
    values.update({key: value for key, value in overrides.items() if value is not None})
    state = train.train(
        args.data,
        args.out,
        values,
        progress=not args.quiet,
        echo=print,
    )
    print(
        f"{args.out}: {state['status']} at step {state['step']}; kept step "
        f"{state['best_step']} by {detector.KEEP_METRICS[state.get('keep', 'map')]} "
        f"(validation mAP {state['best_map']:.4f})"
    )
    return 0 if state["status"] in ("finished", "early_stopped", "time_limited") else 1


def _pretrain(args):
    from platelab import pretrain

    folder = pretrain.work_dir(args.work)
    existing = pretrain.load_plan(folder)
    if args.continue_:
        config = pretrain.extend(folder, args.hours if args.hours is not None else 1.0)
        print(f"{folder}: plan extended to {config.hours:g} hours of training")
    elif existing is not None and (
        args.hours, args.videos, args.seed, args.train, args.vantages, args.details
    ) == (None, None, None, None, None, None):  # fmt: skip
        config = existing
        print(f"{folder}: resuming its plan of {config.hours:g} hours")
    else:
        values = {
            "hours": args.hours, "videos": args.videos, "seed": args.seed,
            "vantages": args.vantages, "details": args.details,
        }  # fmt: skip
        values = {key: value for key, value in values.items() if value is not None}
        training = dict(args.train or [])
        if "init" in training:
            training["init"] = _init_value(str(training["init"]))
        config = pretrain.PretrainConfig.from_dict({**values, "training": training})
        config = pretrain.start(folder, config)
    chunks = 0
    while not pretrain.plan_done(folder) and (args.chunks is None or chunks < args.chunks):
        result = pretrain.run_chunk_in_process(folder, args.chunk_minutes, progress=not args.quiet)
        config = pretrain.load_plan(folder)
        chunks += 1
        if result is None:
            break
        ap50 = ", ".join(f"{label} {value}" for label, value in result.heldout["ap50"].items())
        print(
            f"chunk {result.chunk}: step {result.steps}, {result.minutes:g} of "
            f"{60 * config.hours:g} minutes, {result.cpu_seconds / 3600:.2f} CPU-hours; "
            f"held-out AP50 (seed {result.heldout['seed']}, {result.heldout['frames']} "
            f"frames): {ap50}"
        )
    if pretrain.plan_done(folder):
        print(f"{folder}: the plan's {config.hours:g} hours are trained")
    if args.ship:
        from platelab import starter

        shipped = starter.ship(folder, args.ship, progress=not args.quiet, note=args.note or "")
        print(f"{shipped}: starter written")
    return 0


def _predict(args):
    from platelab import evaluate
    from platelab.atomic import atomic_write_json

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CommandError(f"{out.parent}: no such folder for the predictions file")
    model = detector.load(args.model)
    predictions, skipped, images = detector.predict_folder(
        model, args.images, score_threshold=args.threshold, progress=not args.quiet
    )
    if args.coco:
        # COCO ids: images numbered from 1 in sorted order (listed in <out>.images.json),
        # categories in the model's label order.
        image_ids = {name: index + 1 for index, name in enumerate(images)}
        document = evaluate.write_coco_results(
            predictions, image_ids, {label: index + 1 for index, label in enumerate(model.labels)}
        )
        atomic_write_json(
            out.with_suffix(".images.json"),
            {
                "images": [
                    {"id": image_id, "file_name": name} for name, image_id in image_ids.items()
                ],
                "categories": [
                    {"id": index + 1, "name": label} for index, label in enumerate(model.labels)
                ],
            },
        )
    else:
        document = predictions
    atomic_write_json(out, document)
    print(
        f"{out}: {len(predictions)} detections"
        + (f"; {len(skipped)} images skipped" if skipped else "")
    )
    return 0


def _parse_size(text):
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise CommandError(f"invalid size '{text}': expected WIDTHxHEIGHT, e.g. 960x540") from None
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise CommandError(f"invalid size '{text}': both sides even and at least 16 pixels")
    return width, height


def _vantage_list(text):
    """``--vantages``: comma-separated vantage names, each a known one."""
    from platelab.synth import parse_vantages

    try:
        names = parse_vantages(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not names:
        raise argparse.ArgumentTypeError("no vantage named")
    return names


def _detail_list(text):
    """``--details``: comma-separated scene-detail names, each a known one (none: ``""``)."""
    from platelab.synth import parse_details

    try:
        return parse_details(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _input_path(text):
    """A sample input: a path relative to the current directory, or a live URL as given."""
    return text if "://" in text else from_cwd(text)


def _init_value(text):
    """``--init``: a keyword (starter, imagenet, auto, none) as given, else a path from the current directory."""
    if text in ("starter", "imagenet") or text.lower() in ("auto", "none"):
        return text
    return str(from_cwd(text))


def _paths_from_cwd(handler, *names):
    """Wraps a command handler: the named arguments become paths from the current directory first."""

    def run(args):
        for name in names:
            value = getattr(args, name, None)
            if value is not None:
                setattr(args, name, from_cwd(value))
        return handler(args)

    run.__wrapped__ = handler
    return run


def _build_parser():
    """The ``platelab`` parser: global options, then one subcommand per ``_add_*_parser``."""
    parser = argparse.ArgumentParser(
        prog="platelab",
        description="Traffic video to an evaluated, exported vehicle and license-plate detector.",
    )
    parser.add_argument("--version", action="version", version=f"platelab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_run_parser(commands)
    _add_stages_parser(commands)
    _add_synthesize_parser(commands)
    _add_collect_parser(commands)
    _add_curate_parser(commands)
    _add_merge_parser(commands)
    _add_train_parser(commands)
    _add_pretrain_parser(commands)
    _add_predict_parser(commands)
    _add_evaluate_parser(commands)
    _add_export_parser(commands)
    _add_video_parser(commands)
    _add_sweep_parser(commands)
    _add_doctor_parser(commands)
    return parser


def _add_run_parser(commands):
    """``platelab run``: the notebook chain with papermill."""
    run = commands.add_parser(
        "run", help="run the notebook chain with papermill, with HTML reports"
    )
    source = run.add_mutually_exclusive_group()
    source.add_argument("--profile", help="a profile in params/ (default: default)")
    source.add_argument(
        "--params", type=from_cwd, metavar="FILE", help="a parameter file (YAML) instead"
    )
    run.add_argument("--stages", help="stages to run, e.g. 00,01 or 00-03 (default: all)")
    run.add_argument("--run-id", help="the report folder's name (default: time and profile)")
    run.add_argument("--show-code", action="store_true", help="keep code cells in HTML reports")
    run.add_argument("--notebooks", type=from_cwd, metavar="DIR", help=argparse.SUPPRESS)
    run.add_argument(
        "--reports", type=from_cwd, metavar="DIR", help="where run folders go (default: reports/)"
    )
    run.add_argument("--kernel", help="Jupyter kernel name (default: the notebooks' python3)")
    run.set_defaults(handler=_run)


def _add_stages_parser(commands):
    """``platelab stages``: the stages and their parameters."""
    stages = commands.add_parser("stages", help="list the stages and their parameters")
    stages.add_argument("--notebooks", type=from_cwd, metavar="DIR", help=argparse.SUPPRESS)
    stages.set_defaults(handler=_stages)


def _add_synthesize_parser(commands):
    """``platelab synthesize`` (alias ``synth``): synthetic traffic videos with ground truth (stage 00)."""
    synth = commands.add_parser(
        "synthesize",
        aliases=["synth"],
        help="render synthetic traffic videos with ground truth",
    )
    synth.add_argument("--out", required=True, type=from_cwd, metavar="DIR", help="output folder")
    synth.add_argument("--videos", type=positive(int), default=6, help="number of videos (6)")
    synth.add_argument("--seconds", type=positive(float), default=10.0, help="length of each (10)")
    synth.add_argument("--fps", type=positive(float), default=10.0, help="frame rate (10)")
    synth.add_argument("--size", default="960x540", help="frame size WxH (960x540)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (0)")
    synth.add_argument(
        "--vantages",
        type=_vantage_list,
        metavar="NAMES",
        help="vantage points cycled over the videos, comma-separated (default: the six of "
        "synth.VANTAGES; traffic_camera only when named)",
    )
    synth.add_argument(
        "--purpose",
        choices=("training", "evaluation"),
        default="training",
        help="training data (the default) may not use the seeds reserved for evaluation: "
        "4242, 987654 and every seed from 1,000,000",
    )
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_synthesize)


def _add_collect_parser(commands):
    """``platelab collect`` (alias ``sample``): lossless frames from videos and photos (stage 01)."""
    sample = commands.add_parser(
        "collect",
        aliases=["sample"],
        help="sample lossless frames from videos and photos (stage 01)",
    )
    sample.add_argument(
        "inputs",
        nargs="+",
        type=_input_path,
        metavar="VIDEO_OR_DIR",
        help="videos, photos, folders or globs",
    )
    sample.add_argument("--out", required=True, type=from_cwd, metavar="DIR", help="output folder")
    sample.add_argument("--fps", type=positive(float), default=2.0, help="frames per second (2)")
    sample.add_argument(
        "--cut-static", action="store_true", help="also cut stretches with no motion"
    )
    sample.add_argument("--workers", type=positive(int), help="CPU threads (default: all)")
    sample.add_argument("--quiet", action="store_true", help="no progress bar")
    sample.set_defaults(handler=_collect)


def _add_curate_parser(commands):
    """``platelab curate``: drop duplicate and empty frames (stage 02)."""
    curate = commands.add_parser("curate", help="drop duplicate and empty frames (stage 02)")
    curate.add_argument(
        "inputs",
        nargs="+",
        type=from_cwd,
        metavar="DIR",
        help="frame folders, photo folders or images",
    )
    curate.add_argument("--out", required=True, type=from_cwd, metavar="DIR", help="output folder")
    curate.add_argument(
        "--threshold", type=int, default=3, help="near-duplicate threshold in changed cells (3)"
    )
    curate.add_argument(
        "--drop-empty", action="store_true", help="also drop frames with nothing moving"
    )
    curate.add_argument("--quiet", action="store_true", help="no progress bar")
    curate.set_defaults(handler=_curate)


def _add_merge_parser(commands):
    """``platelab merge``: annotation batches into one split dataset (stage 05)."""
    from platelab import merge as merge_module

    merge_module.add_merge_arguments(
        commands.add_parser(
            "merge", help="merge annotation batches into one split dataset (stage 05)"
        )
    )


def _add_train_parser(commands):
    """``platelab train``: the detector on a merged dataset (stage 06)."""
    train = commands.add_parser("train", help="train the detector on a merged dataset (stage 06)")
    train.add_argument(
        "--data", required=True, type=from_cwd, metavar="DIR", help="merged dataset (stage 05)"
    )
    train.add_argument(
        "--out",
        required=True,
        type=from_cwd,
        metavar="RUN_DIR",
        help="the run folder (resumed if it exists)",
    )
    train_source = train.add_mutually_exclusive_group()
    train_source.add_argument(
        "--profile", help="take 06_train's parameters from params/<NAME>.yaml"
    )
    train_source.add_argument(
        "--params", type=from_cwd, metavar="FILE", help="a parameter file (YAML) instead"
    )
    train.add_argument(
        "--init",
        type=_init_value,
        help="starter (the default: models/starter), imagenet, auto, none, a weights file, "
        "a starter folder or a run folder",
    )
    train.add_argument("--steps", type=positive(int), help="training steps")
    train.add_argument("--batch-size", type=positive(int), help="images per step")
    train.add_argument("--width", type=positive(float), help="MobileNetV2 width multiplier")
    train.add_argument(
        "--input-size", type=positive(int), help="training crop side (multiple of 64)"
    )
    train.add_argument(
        "--infer-size",
        type=int,
        help="long side of the inference input, frames letterboxed whole (multiple of 64; "
        "0: a square input, the frame squashed into it)",
    )
    train.add_argument(
        "--infer-margin",
        type=int,
        help="padding in network pixels around the letterboxed frame (0 or a multiple of "
        "32; default 32): a frame's edges against padding, as training crops see them",
    )
    train.add_argument(
        "--infer-max-scale",
        type=float,
        help="largest letterbox scale at inference (1.0: an image smaller than the input is "
        "not enlarged, as for close-up photos; 0: none, the default)",
    )
    train.add_argument(
        "--whole-frames",
        action="store_true",
        help="train on whole letterboxed frames instead of crops at native scale",
    )
    train.add_argument(
        "--max-minutes", type=float, help="stop (evaluated and saved) after this many minutes"
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        help="peak learning rate (default: by --init: 0.0003 from the starter or a run, "
        "0.006 from random weights or ImageNet)",
    )
    train.add_argument(
        "--keep",
        choices=tuple(detector.KEEP_METRICS),
        help="which evaluated weights best.keras keeps: the best validation mAP (the "
        "default), the best validation AP50, or the last",
    )
    train.add_argument(
        "--tta",
        choices=tta.MODES,
        help="test-time augmentation of the trained detector: none (the default), or flip "
        "(each image also detected mirrored, the two fused)",
    )
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train)


def _add_pretrain_parser(commands):
    """``platelab pretrain``: the starter on a synthetic corpus."""
    pretrain = commands.add_parser(
        "pretrain",
        help="pretrain the starter on a synthetic corpus, in resumable chunks",
    )
    pretrain.add_argument(
        "--work", type=from_cwd, metavar="DIR", help="work folder (default data/pretrain)"
    )
    pretrain.add_argument(
        "--hours",
        type=positive(float),
        help="hours of training in the plan (default 2; a folder's own plan when resuming); "
        "with --continue, hours to add (default 1)",
    )
    pretrain.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help="add --hours to the work folder's plan and train them",
    )
    pretrain.add_argument(
        "--chunk-minutes",
        type=positive(float),
        default=30.0,
        help="training minutes per chunk (checkpointed and scored after each; default 30)",
    )
    pretrain.add_argument(
        "--chunks", type=positive(int), help="chunks to train in this call (default: until done)"
    )
    pretrain.add_argument("--videos", type=positive(int), help="corpus videos (default 600)")
    pretrain.add_argument(
        "--vantages",
        type=_vantage_list,
        metavar="NAMES",
        help="the corpus' vantage points, comma-separated, one video each a shard (default: "
        "the six of synth.VANTAGES; add traffic_camera for elevated narrow-lens views)",
    )
    pretrain.add_argument(
        "--details",
        type=_detail_list,
        metavar="NAMES",
        help="scene details over the default, comma-separated: osd (a fixed camera's "
        "on-screen time stamp), badges (make and model lettering on vehicles), plates (plates "
        "with real plates' looks: graphic backgrounds, dealer frames, dirt), fences (fences "
        "and sliding gates of steel bars, chain-link fences), lamps (rear lamps with LED bars, "
        "rows and rings, light bars and third brake lamps, lit when braking), stickers (bumper "
        "stickers, rear-window lettering, work vehicles' names and telephone numbers, buses' "
        "fleet numbers); default none",
    )
    pretrain.add_argument(
        "--seed", type=int, help="first corpus batch seed (default 20000; never an evaluation seed)"
    )
    pretrain.add_argument(
        "--train",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="a training value over the pretraining recipe, repeatable (e.g. input_size=320; "
        "init=models/starter continues that starter: a further stage of it)",
    )
    pretrain.add_argument(
        "--ship",
        type=from_cwd,
        metavar="DIR",
        help="then write the starter (weights, model card, provenance) to DIR, e.g. models/starter",
    )
    pretrain.add_argument("--note", help="with --ship: a remark for provenance.json")
    pretrain.add_argument("--quiet", action="store_true", help="no progress bars")
    pretrain.set_defaults(handler=_pretrain)


def _add_predict_parser(commands):
    """``platelab predict``: a trained model over a folder of images."""
    predict = commands.add_parser("predict", help="run a trained model over a folder of images")
    predict.add_argument(
        "--model", required=True, type=from_cwd, metavar="RUN_DIR", help="a training run folder"
    )
    predict.add_argument(
        "--images", required=True, type=from_cwd, metavar="DIR", help="a folder of images"
    )
    predict.add_argument(
        "--out", required=True, type=from_cwd, metavar="FILE", help="predictions JSON to write"
    )
    predict.add_argument("--threshold", type=float, help="lowest score kept (default: the model's)")
    predict.add_argument(
        "--coco", action="store_true", help="write COCO results format (with image ids)"
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_predict)


def _add_evaluate_parser(commands):
    """``platelab evaluate``: COCO metrics (the arguments are evaluate's own)."""
    from platelab import evaluate as evaluate_module

    evaluate_module.add_evaluate_arguments(
        commands.add_parser("evaluate", help="COCO metrics of predictions or a model on VOC data")
    )


def _add_export_parser(commands):
    """``platelab export``: export's own arguments, its paths taken from the current directory."""
    from platelab.deploy import export as export_module

    export_parser = export_module.add_export_arguments(
        commands.add_parser("export", help="export a trained model (SavedModel, TFLite, ONNX)")
    )
    export_parser.set_defaults(
        handler=_paths_from_cwd(export_module.run_export_command, "model", "out", "representative")
    )


def _add_video_parser(commands):
    """``platelab video``: video's own arguments, its paths taken from the current directory."""
    from platelab.deploy import video as video_module

    video_parser = video_module.add_video_arguments(
        commands.add_parser("video", help="draw a model's detections on a video (stage 08)")
    )
    video_parser.set_defaults(
        handler=_paths_from_cwd(video_module.run_video_command, "model", "input", "output")
    )


def _add_sweep_parser(commands):
    """``platelab sweep``: a grid of parameter sets (the arguments are analyze's own)."""
    from platelab import analyze as analyze_module

    analyze_module.add_sweep_arguments(
        commands.add_parser("sweep", help="run a grid of parameter sets and compare the runs")
    )


def _add_doctor_parser(commands):
    """``platelab doctor``: check the tools the chain needs."""
    doctor = commands.add_parser("doctor", help="check ffmpeg, mongod, chromium and the kernel")
    doctor.set_defaults(handler=_doctor)
