"""The ``alexnet-replay`` command. Thin by design (STYLE.md habit 11): each
subcommand parses its options, calls a library function and prints the result.

A :class:`~alexnet_replay.errors.ReplayError` (a mistake in the user's input)
is printed as one line, ``alexnet-replay: error: ...``, without a traceback,
and sets the exit code (2 for a cfg file the reader rejects).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import ReplayError, os_error_message

Handler = Callable[[argparse.Namespace], int]


def _version_text() -> str:
    from . import __version__, build_info

    info = build_info()
    cuda = "no"
    if info["cuda_compiled"]:
        seen = (f"{info['cuda_devices']} device(s)" if info["cuda_devices"]
                else f"no device ({info['cuda_devices_reason']})")
        cuda = (f"yes ({info['cuda_compiler']}, architectures {info['cuda_archs']}); {seen}; "
                f"GEMM: {info.get('cuda_gemm', '?')}")
    return "\n".join([
        f"alexnet-replay {__version__}",
        f"  engine      C++17, {info['cxx_compiler']}, {info['build_type']} build",
        f"  flags       {info['cxx_flags'] or '(none)'}",
        f"  BLAS        {info['blas']}",
        f"  threads     {info['threads']}",
        f"  CUDA code   {cuda}",
    ])


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _image_size(text: str) -> tuple[int, int, int]:
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, got {text!r}")
    return dims  # type: ignore[return-value]


# -- subcommands ---------------------------------------------------------------
def _cmd_verify(args: argparse.Namespace) -> int:
    from .original.verify import verify_copy

    report = verify_copy(Path(args.path))
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.format_text(verbose=args.verbose))
    return 0 if report.ok else 1


def _cmd_catalog(args: argparse.Namespace) -> int:
    from .harness.runnable import assess
    from .original.catalog import build_catalog, catalog_markdown, catalog_text

    catalog = build_catalog(Path(args.path), lambda net, rebuild: assess(net, rebuild).to_dict())
    if args.json:
        _print_json(catalog)
    elif args.md:
        sys.stdout.write(catalog_markdown(catalog))
    else:
        sys.stdout.write(catalog_text(catalog))
    return 0


def _cmd_show_net(args: argparse.Namespace) -> int:
    from .harness.runnable import assess
    from .original.shownet import load, network_dict, network_table

    net, unused = load(args.layers, args.params, image_size=args.image_size,
                       lenient=args.lenient, num_gpus=args.num_gpus)
    engine = assess(net, lambda profile: load(args.layers, args.params, image_size=args.image_size,
                                              lenient=args.lenient, num_gpus=args.num_gpus,
                                              tree=profile.tree)[0]).to_dict()
    if args.json:
        _print_json(network_dict(net, unused, engine))
    else:
        sys.stdout.write(network_table(net, unused, engine))
    return 0


def _cmd_check_grads(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from .gradcheck import THRESHOLD, check_gradients, summary
    from .original.shownet import load

    config, _ = load(args.layers, args.params, image_size=args.image_size, lenient=args.lenient)
    rng = np.random.default_rng(args.seed)
    data = []
    for layer in sorted((l for l in config.layers.values() if l.type == "data"), key=lambda l: l.attrs["dataIdx"]):
        if layer.attrs["dataIdx"] == 0:
            data.append((args.data_scale * rng.standard_normal((layer.outputs, args.minibatch))).astype(np.float32))
        elif layer.outputs == 1:
            classes = max((l.outputs for l in config.layers.values() if l.type == "softmax"), default=2)
            data.append(rng.integers(0, classes, (1, args.minibatch)).astype(np.float32))
        else:
            data.append((rng.random((layer.outputs, args.minibatch)) < 0.5).astype(np.float32))
    bar = tqdm(total=0, unit="eval", disable=args.json or not sys.stderr.isatty(), file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    checks = check_gradients(config, data, seed=args.seed, progress=progress, max_elements=args.max_elements,
                             central=not args.one_sided)
    bar.close()
    if args.json:
        _print_json({"threshold": THRESHOLD, "rule": "one-sided" if args.one_sided else "central",
                     "minibatch": args.minibatch, "matrices": [c.to_dict() for c in checks],
                     "passed": all(c.passed for c in checks)})
    else:
        for c in checks:
            print(c.text())
        print(summary(checks))
    return 0 if all(c.passed for c in checks) else 1


def _cmd_parity(args: argparse.Namespace) -> int:
    from .modernize.parity import cli_parity

    return cli_parity(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from .modernize.export import cli_export

    return cli_export(args)


def _cmd_train(args: argparse.Namespace) -> int:
    from .harness.driver import export_gpu_ids, train

    export_gpu_ids(args.gpu)  # before anything starts CUDA in this process
    run, _ = train(args)
    return 1 if run.grad_checks is not None and not all(c.passed for c in run.grad_checks) else 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from .harness import schedules

    if args.action == "list":
        for name in schedules.named_schedules():
            sch = schedules.load_named(name)
            print(f"{name:<14} {len(sch.stages)} stages  {sch.source:<16} {sch.description}")
        return 0
    schedule = schedules.load_schedule(args.schedule)
    if args.action == "show":
        print(schedules.describe(schedule))
        return 0
    if args.action == "export":
        target = Path(args.to)
        text = schedules.to_toml(schedule) if target.suffix == ".toml" else schedules.to_script(schedule)
        if target.exists() and not args.force:
            raise ReplayError(f"{target}: exists (give --force to replace it)")
        from .files import atomic_write_bytes

        atomic_write_bytes(target, lambda f: f.write(text.encode("utf-8")))
        print(f"{target}: schedule '{schedule.name}', {len(schedule.stages)} stages")
        return 0
    from .harness.driver import export_gpu_ids
    from .harness.options import OPTIONS

    export_gpu_ids(args.gpu)  # before anything starts CUDA in this process
    overrides = {k: str(getattr(args, k)) for k in OPTIONS if getattr(args, k, None) is not None}
    folder = schedules.run_schedule(schedule, args.out, overrides=overrides, cfg_dirs=args.cfg_dir or [],
                                    start_from=args.load_file, quiet=args.quiet,
                                    per_stage=schedules.stage_options(args.stage_option or [], schedule))
    print(f"schedule '{schedule.name}' done: {len(schedule.stages)} stages; checkpoints in {folder}, "
          f"log in {Path(args.out) / 'log.txt'}")
    return 0


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    from .harness.checkpoint import convert_checkpoint

    target = Path(args.target)
    if target.exists() and not args.force:
        raise ReplayError(f"{target}: exists (give --force to replace it)")
    fmt = convert_checkpoint(args.source, target, layers=args.layer_def, params=args.layer_params,
                             image_size=args.image_size)
    print(f"{target}: written in {'the release' if fmt == 'release' else 'this project'}'s format")
    return 0


def _ranges(text: str | None, what: str) -> list[int] | None:
    from .harness.options import parse_range

    return parse_range(text, what) if text else None


def _cmd_predict(args: argparse.Namespace) -> int:
    from .harness.predict import error_report, load_trained, predict, write_predictions

    trained = load_trained(args.checkpoint, data_path=args.data_path, data_provider=args.data_provider)
    batches = _ranges(args.test_range, "test_range") or _ranges(trained.options.get("test_range"), "test_range")
    if not batches:
        raise ReplayError(f"{trained.source}: the checkpoint names no test range; give --test-range")
    preds = predict(trained, batches, multiview=bool(args.multiview_test), logreg_name=args.logreg_name,
                    minibatch=args.mini, device=args.device)
    paths = write_predictions(preds, args.out, release=not args.no_release)
    rep = error_report(preds)
    if rep["labelled"]:
        print(f"{rep['images']} images, {preds.info['views']} view(s): top-1 error {rep['top1']:.4f}, "
              f"top-5 error {rep['top5']:.4f}")
    print(f"predictions in {args.out}: {', '.join(p.name for p in paths.values())}"
          + ("" if args.no_release else ", test_preds_<batch>"))
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    from .harness.ensemble import average, member_errors, search_weights
    from .harness.predict import error_report, read_predictions, write_predictions

    members = [read_predictions(p, args.data_path) for p in args.predictions]
    names = [str(p) for p in args.predictions]
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ReplayError(f"--weights {args.weights}: give numbers separated by commas") from None
        passes = []
    else:
        weights, passes = search_weights(members, names, args.search_on)
    avg = average(members, weights, names)
    avg.info["search"] = passes
    paths = write_predictions(avg, args.out, release=not args.no_release)
    for row in member_errors(members, names) + [{"name": "average", **error_report(avg)}]:
        if row.get("top1") is not None:
            print(f"{row['name']}: top-1 error {row['top1']:.4f}, top-5 error {row['top5']:.4f}")
    print(f"weights {', '.join(f'{w:g}' for w in weights)}"
          + (f" (searched, {len(passes)} pass(es))" if passes else " (given)")
          + f"; average in {args.out}: {', '.join(p.name for p in paths.values())}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .harness.predict import load_trained

    try:
        from .harness.views import show_views
    except ImportError as exc:  # matplotlib is an optional extra
        raise ReplayError(f"show draws with matplotlib, which is not installed ({exc}); "
                          "pip install 'alexnet-replay[show]'") from None
    if not (args.cost is not None or args.filters or args.preds or args.similar or args.features):
        raise ReplayError("show: name a view: --cost, --filters LAYER, --preds, --similar LAYER or --features LAYER")
    trained = load_trained(args.checkpoint, data_path=args.data_path, data_provider=args.data_provider)
    show_views(trained, args.out, cost=args.cost, filters=args.filters, preds=args.preds, similar=args.similar,
               features=args.features, test_range=_ranges(args.test_range, "test_range"),
               train_range=_ranges(args.train_range, "train_range"), multiview=bool(args.multiview_test),
               logreg_name=args.logreg_name, count=args.count, neighbours=args.neighbours,
               only_errors=args.only_errors, seed=args.seed, minibatch=args.mini, device=args.device, say=print)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .harness.demo import run_demo

    summary = run_demo(args.out, quick=args.quick, seed=args.seed, epochs=args.epochs, parity=not args.no_parity,
                       quiet=args.quiet, backend=args.backend, device=args.device)
    if args.quiet:
        print(f"test accuracy {summary['test_accuracy']:.2%}; outputs in {args.out}")
    parity = summary["parity"]
    return 0 if not parity.get("ran") or parity.get("passed") else 1


def _cmd_dossier(args: argparse.Namespace) -> int:
    from .dossier import build_dossier

    argv = " ".join(["alexnet-replay dossier", args.copy, "--out", args.out]
                    + (["--run", args.run] if args.run else []) + (["--quick"] if args.quick else []))
    dossier = build_dossier(args.copy, args.out, run=args.run, quick=args.quick, command=argv)
    page = Path(args.out) / "dossier.html"
    print(f"{page}: {page.stat().st_size:,} bytes; {dossier['identity']['summary']}")
    print(f"replay: {dossier['replay']['parity']['verdict']}")
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(args.out).iterdir())
    print(f"{args.out}: {', '.join(written)} ({dossier['build_seconds']:.1f} s)")
    return 0


def _cmd_make_batches(args: argparse.Namespace) -> int:
    from .harness.make_batches import (cifar10_python_archive, digits_batches, image_folder_batches,
                                       tagged_image_batches, write_folder_atomically)

    if args.cifar10 and not Path(args.cifar10).is_file():
        raise ReplayError(f"{args.cifar10}: no such file (give the CIFAR-10 python archive)")
    if args.images and not Path(args.images).is_dir():
        raise ReplayError(f"{args.images}: no such folder (give a folder of images, one subfolder per class)")
    if args.tags and not Path(args.tags).is_file():
        raise ReplayError(f"{args.tags}: no such file (give the tags file)")
    if args.max_tags and not args.tags:
        raise ReplayError("--max-tags applies to --tags (multi-label batches)")
    if args.tags and not args.images:
        raise ReplayError("--tags lists images of an --images folder; give --images DIR too")
    if args.tags and args.format != "jpeg":
        raise ReplayError("--tags writes Flickr batches, which hold JPEGs (driver.md §D.7); drop --format raw")

    def make(out: Path):
        if args.tags:
            return tagged_image_batches(args.images, args.tags, out, image_size=args.image_size,
                                        batch_size=args.batch_size, num_test_batches=args.test_batches,
                                        max_tags=args.max_tags, quality=args.quality, seed=args.seed)
        if args.images:
            return image_folder_batches(args.images, out, image_size=args.image_size, batch_size=args.batch_size,
                                        num_test_batches=args.test_batches, fmt=args.format, quality=args.quality,
                                        seed=args.seed)
        if args.digits:
            return digits_batches(out, seed=args.seed)
        return cifar10_python_archive(Path(args.cifar10), out)

    made = write_folder_atomically(args.out, make, force=args.force)
    print(f"{made.out_dir}: batches.meta and data_batch_{made.batch_nums[0]}..{made.batch_nums[-1]} "
          f"({made.meta.num_vis} values per image, {made.meta.num_classes} "
          f"{'tags' if args.tags else 'classes'}); "
          f"train {made.train_batches[0]}-{made.train_batches[-1]}, test "
          + (f"{made.test_batches[0]}-{made.test_batches[-1]}" if made.test_batches else "none"))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet-replay",
        description="Run the 2012 AlexNet release's networks today, exactly as its files define them.")
    parser.add_argument("--version", action="store_true", help="print the version and how the engine was built")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("verify", help="check a copy of the 2012 release against its manifest and git tree id")
    p.add_argument("path", help="folder of the copy (a clone or an unpacked archive)")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/json-formats.md)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every missing file")
    p.set_defaults(handler=_cmd_verify)

    p = sub.add_parser("catalog", help="every .cfg under a folder: verdicts, shapes, parameters, notes")
    p.add_argument("path", help="folder to search for .cfg files (e.g. a copy of the release)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object (docs/json-formats.md)")
    fmt.add_argument("--md", action="store_true", help="print Markdown tables")
    p.set_defaults(handler=_cmd_catalog)

    p = sub.add_parser("show-net", help="table of a network's layers: shapes, weights, multiply-adds")
    p.add_argument("layers", help="layer-definition file, or the name of a bundled network (paper-2012, cifar-18pct)")
    p.add_argument("params", nargs="?", help="layer-parameter file (optional; checked when given)")
    p.add_argument("--image-size", type=_image_size, metavar="C,H,W",
                   help="input image size (default: the size the release used for this family)")
    p.add_argument("--lenient", action="store_true", help="relax the old-file quirks instead of failing")
    p.add_argument("--num-gpus", type=int, metavar="N", help="bound the gpu= keys as --num-gpus did")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/json-formats.md)")
    p.set_defaults(handler=_cmd_show_net)

    from .harness.options import add_train_arguments

    p = sub.add_parser("train", help="the 2012 driver's training loop (convnet.py's options, driver.md §C)")
    add_train_arguments(p)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("schedule", help="replay a run script of convnet.py lines or a TOML schedule (driver.md §E)")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = ssub.add_parser("list", help="the named schedules (driver.md §E.2, §E.3)")
    q.set_defaults(handler=_cmd_schedule)
    q = ssub.add_parser("show", help="the stages of a named schedule or a schedule file")
    q.add_argument("schedule", help="a name (see 'schedule list'), a .toml file or a run script")
    q.set_defaults(handler=_cmd_schedule)
    q = ssub.add_parser("export", help="write a schedule as TOML or as a run script")
    q.add_argument("schedule", help="a name, a .toml file or a run script")
    q.add_argument("--to", required=True, metavar="FILE", help="FILE.toml, or any other name for a shell script")
    q.add_argument("--force", action="store_true", help="replace FILE")
    q.set_defaults(handler=_cmd_schedule)
    q = ssub.add_parser("run", help="run the stages in order through the driver; re-run to continue after a kill")
    q.add_argument("schedule", help="a name, a .toml file or a run script")
    q.add_argument("--out", required=True, metavar="DIR",
                   help="the schedule's folder: schedule.json (progress), log.txt, the run's checkpoints")
    q.add_argument("--cfg-dir", action="append", metavar="DIR",
                   help="where relative .cfg paths are looked up (also: the schedule's folder, the current "
                        "folder, $ALEXNET_RELEASE_DIR)")
    q.add_argument("--from", dest="load_file", metavar="CKPT",
                   help="the checkpoint a first stage with -f resumes from (copied, never written to; also -f), "
                        "or the one a first stage with init-from = \"previous\" is initialised from")
    q.add_argument("--stage-option", action="append", metavar="K:NAME=VALUE",
                   help="a driver option for stage K only, winning over the schedule's and the options given here "
                        "(a chain's stages read different data: 1:data-path=DIR1 3:data-path=DIR2); repeatable")
    add_train_arguments(q)  # driver options given here go to every stage and win over the schedule's
    q.set_defaults(handler=_cmd_schedule)

    p = sub.add_parser("checkpoint", help="the release's pickled checkpoints and this project's (driver.md §C.7)")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = csub.add_parser("convert", help="convert a checkpoint to the other format (own .npz <-> release pickle)")
    q.add_argument("source", help="a checkpoint: this project's .npz, or the release's pickle (also zipped)")
    q.add_argument("target", help="the converted file")
    q.add_argument("--layer-def", metavar="FILE", help="definition file (default: the one the checkpoint names)")
    q.add_argument("--layer-params", metavar="FILE", help="parameter file (default: the one the checkpoint names)")
    q.add_argument("--image-size", type=_image_size, metavar="C,H,W", help="input size (default: from the checkpoint)")
    q.add_argument("--force", action="store_true", help="replace TARGET")
    q.set_defaults(handler=_cmd_checkpoint)

    def evaluation_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data-path", metavar="DIR", help="data batches (default: the checkpoint's --data-path)")
        q.add_argument("--data-provider", metavar="NAME", help="provider (default: the checkpoint's)")
        q.add_argument("--test-range", metavar="RANGE", help="test batches (default: the checkpoint's)")
        q.add_argument("--multiview-test", type=int, default=0, choices=(0, 1),
                       help="1: average the softmax over the 10 views (ImageNet) or 9 (CIFAR) of driver.md §C.5")
        q.add_argument("--logreg-name", metavar="NAME", help="the cost.logreg layer (default: the only one)")
        q.add_argument("--mini", type=int, default=128, metavar="N", help="cases per forward pass (default 128)")
        q.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="engine (default cpu)")

    p = sub.add_parser("predict", help="softmax outputs of a checkpoint for test batches, errors, submission file")
    p.add_argument("checkpoint", help="a checkpoint (.npz or the release's pickle) or a run folder (its newest)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="writes predictions.npz, predictions.json, submission.txt, test_preds_<batch>")
    evaluation_options(p)
    p.add_argument("--no-release", action="store_true", help="do not write the release's test_preds_<batch>")
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser("average", help="weighted average of several predictions (an ensemble), weights given or "
                                       "searched as avg-valid.py did")
    p.add_argument("predictions", nargs="+", metavar="PRED",
                   help="predictions.npz, a folder holding one, or a folder of the release's test_preds_<batch>")
    p.add_argument("--out", required=True, metavar="DIR", help="the average, written as predict writes")
    p.add_argument("--weights", metavar="W1,W2,...", help="one weight per PRED (default: searched on the labels)")
    p.add_argument("--search-on", choices=("top5", "top1"), default="top5",
                   help="the error the weight search lowers (default top5, as avg-valid.py)")
    p.add_argument("--data-path", metavar="DIR", help="labels for folders of test_preds_<batch> files")
    p.add_argument("--no-release", action="store_true", help="do not write the release's test_preds_<batch>")
    p.set_defaults(handler=_cmd_average)

    p = sub.add_parser("show", help="shownet.py's views as PNG files, their numbers and one HTML page")
    p.add_argument("checkpoint", help="a checkpoint (.npz or the release's pickle) or a run folder (its newest)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the pictures, numbers and show.html")
    p.add_argument("--cost", nargs="?", const="", metavar="NAME",
                   help="training and test curves of cost NAME (default: the first), rate changes marked")
    p.add_argument("--filters", metavar="LAYER", help="a layer's filters; conv1 of a two-tower net: conv1a, conv1b")
    p.add_argument("--preds", action="store_true", help="test images with their 5 best classes")
    p.add_argument("--similar", metavar="LAYER", help="test images and their nearest training images in LAYER")
    p.add_argument("--features", metavar="LAYER", help="LAYER's outputs for --test-range, written to files")
    p.add_argument("--train-range", metavar="RANGE", help="--similar: training batches searched (default: the "
                                                           "checkpoint's)")
    p.add_argument("--count", type=int, default=8, metavar="N", help="--preds, --similar: images shown (default 8)")
    p.add_argument("--neighbours", type=int, default=8, metavar="K", help="--similar: neighbours each (default 8)")
    p.add_argument("--only-errors", action="store_true", help="--preds: only top-1 errors")
    p.add_argument("--seed", type=int, default=0, help="which images are drawn (default 0)")
    evaluation_options(p)
    p.set_defaults(handler=_cmd_show)

    p = sub.add_parser("demo", help="the whole replay on handwritten digits: data, training, test, parity")
    p.add_argument("--out", default="alexnet-replay-demo", metavar="DIR",
                   help="folder for data, checkpoint, log and parity report (default ./alexnet-replay-demo)")
    p.add_argument("--quick", action="store_true", help="one epoch, to check the plumbing")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs to train (default 15; 1 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, weights and draws")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check (it needs PyTorch)")
    p.add_argument("--backend", choices=["engine", "port"], default="engine",
                   help="what trains: the C++ engine or the PyTorch port (docs/scaling.md) (default engine)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N",
                   help="where it trains (cuda:N: the port only) (default cpu)")
    p.add_argument("--quiet", action="store_true", help="only the final line")
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("dossier", help="a curator's dossier of a copy of the release: one self-contained page, "
                                       "its facts as JSON, and an RO-Crate")
    p.add_argument("copy", help="folder of the copy of the release")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (dossier.html, dossier.json, replay/, ro-crate-metadata.json); replaced "
                        "whole only if it holds an earlier dossier")
    p.add_argument("--run", metavar="RUNDIR",
                   help="a training run folder (its E.B.npz checkpoints) to describe as the replay; without it the "
                        "demo runs")
    p.add_argument("--quick", action="store_true", help="the demo's replay for one epoch")
    p.set_defaults(handler=_cmd_dossier)

    p = sub.add_parser("parity", help="the engine against the PyTorch port, layer by layer, with a report")
    p.add_argument("layers", help="layer-definition file, or a bundled network name (cifar-18pct, paper-2012)")
    p.add_argument("params", nargs="?", default=None, help="layer-parameter file (bundled names bring theirs)")
    p.add_argument("--image-size", type=_image_size, default=None, metavar="C,H,W", help="input size")
    p.add_argument("--minibatch", type=int, default=4, help="cases per minibatch (default 4)")
    p.add_argument("--steps", type=int, default=3, help="training steps compared (default 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the port runs (cuda: TF32 off; an error if no GPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data and masks")
    p.add_argument("--lenient", action="store_true", help="read files the release itself rejected")
    p.add_argument("--report", default=None, metavar="DIR", help="write report.json, report.md, report.html here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_cmd_parity)

    p = sub.add_parser("export", help="the PyTorch port with the engine's weights as torch.export (.pt2) or ONNX, "
                                      "checked")
    p.add_argument("layers", help="layer-definition file, or the name of a bundled network (paper-2012, cifar-18pct)")
    p.add_argument("params", nargs="?", help="layer-parameter file (a bundled network brings its own)")
    p.add_argument("--weights", metavar="FILE",
                   help="checkpoint (alexnet-replay's .npz) to take the weights from (default: fresh ones from --seed)")
    p.add_argument("--image-size", type=_image_size, metavar="C,H,W",
                   help="input image size (default: the size the release used for this family)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights, connection tables and the check's images (default 0)")
    p.add_argument("--to", required=True, metavar="FILE",
                   help="output file: .pt2 for torch.export, .onnx for ONNX (.pt for TorchScript only where "
                        "torch.jit is not deprecated); checked against the engine first")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("make-batches",
                       help="write a data folder in the release's batch formats (CIFAR, ImageNet, Flickr)")
    p.add_argument("out", help="folder to write data_batch_N and batches.meta into")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--digits", action="store_true",
                     help="scikit-learn's handwritten digits, rendered as 3x32x32 images (batches 1-5 train, 6 test)")
    src.add_argument("--cifar10", metavar="ARCHIVE", help="the standard CIFAR-10 python archive (.tar.gz)")
    src.add_argument("--images", metavar="DIR", help="a folder of images, one subfolder per class: ImageNet-style "
                     "batches (driver.md §D.4 JPEG, or §D.5 raw with --format raw); with --tags, any layout")
    p.add_argument("--tags", metavar="FILE",
                   help="--images: multi-label (Flickr, flickr-ce-cropped, driver.md §D.7) batches. FILE is UTF-8 "
                        "text, one image per line: its path relative to DIR, a TAB, its tags separated by commas "
                        "(e.g. 'beach/001.jpg<TAB>sea, sand'); '#' lines and blank lines are skipped. Only the "
                        "listed images are used; batches.meta gets the tag vocabulary (label_names, most frequent "
                        "first) and freq_to_id")
    p.add_argument("--max-tags", type=int, default=0, metavar="K",
                   help="--tags: keep the K most frequent tags of the training images (default 0: all)")
    p.add_argument("--image-size", type=int, default=256, metavar="S",
                   help="--images: images are scaled (shorter side) and centre-cropped to SxS (default 256)")
    p.add_argument("--batch-size", type=int, default=1024, metavar="N",
                   help="--images: images per batch (default 1024)")
    p.add_argument("--test-batches", type=int, default=1, metavar="K",
                   help="--images: the last K batches are test batches (default 1)")
    p.add_argument("--format", choices=("jpeg", "raw"), default="jpeg",
                   help="--images: JPEG batches (inet-lr-cropped-jpeg) or raw pixels (inet-lr-cropped)")
    p.add_argument("--quality", type=int, default=90, help="--images: JPEG quality of the stored images (default 90)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split into batches (--digits, --images)")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    p.set_defaults(handler=_cmd_make_batches)

    p = sub.add_parser("check-grads", help="the release's numerical gradient check (engine.md §8) in the engine, "
                       "with central differences unless --one-sided")
    p.add_argument("layers", help="layer-definition file, or a bundled network")
    p.add_argument("params", nargs="?", help="layer-parameter file (a bundled network brings its own)")
    p.add_argument("--image-size", type=_image_size, metavar="C,H,W", help="input image size")
    p.add_argument("--minibatch", type=int, default=8, metavar="N", help="cases of random data (default 8)")
    p.add_argument("--data-scale", type=float, default=0.1, metavar="S",
                   help="images are S * N(0,1) (default 0.1); labels are uniform")
    p.add_argument("--max-elements", type=int, metavar="K",
                   help="check only K elements of each matrix, spread evenly over it (the release checked all)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--central", action="store_true",
                      help="central differences (E(w+h) - E(w-h)) / 2Nh, error O(h^2): the default")
    rule.add_argument("--one-sided", action="store_true",
                      help="the release's rule exactly: (E(w+h) - E(w)) / Nh, whose O(h) error alone can exceed "
                           "2%% with the release's steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the weights")
    p.add_argument("--lenient", action="store_true", help="relax the old-file quirks instead of failing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_check_grads)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.version:
            print(_version_text())
            return 0
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return args.handler(args)
    except ReplayError as exc:
        print(f"alexnet-replay: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the file system refused: a full disk, a file where a folder should be, ...
        if isinstance(exc, BrokenPipeError):  # `alexnet-replay catalog ... | head`
            sys.stderr.close()
            return 0
        print(f"alexnet-replay: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("alexnet-replay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
