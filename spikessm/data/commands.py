"""``spikessm data``: generate ListOps / Pathfinder locally, and describe a task's data.

    spikessm data generate listops --out DIR [--train N --val N --test N --min-length N --max-length N --seed S]
    spikessm data generate pathfinder --out DIR [--resolution R --contour-length C --count N --seed S]
    spikessm data info TASK [--data-dir DIR] [--set key=value ...]

The generators write the released layouts under ``DIR``, so ``--data-dir DIR`` then reads them.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from spikessm.data.registry import get_task, resolve_data_dir
from spikessm.argtypes import seed
from spikessm.errors import UserError
from spikessm.files import check_writable_dir


def add_data_commands(subparsers) -> None:
    """Add the ``data`` command to an argparse ``subparsers`` object; each leaf sets ``func(args) -> int``."""
    data = subparsers.add_parser("data", help="generate ListOps/Pathfinder, describe a task's data",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = data.add_subparsers(dest="data_command", required=True, metavar="{generate,info}")

    generate = actions.add_parser("generate", help="write a generated data set in the official layout")
    generators = generate.add_subparsers(dest="generator", required=True, metavar="{listops,pathfinder}")

    listops = generators.add_parser("listops", help="LRA ListOps: DIR/listops-1000/basic_{train,val,test}.tsv")
    listops.add_argument("--out", type=Path, required=True, help="data directory to write into")
    listops.add_argument("--train", type=int, default=96000, help="training expressions (LRA: 96000)")
    listops.add_argument("--val", type=int, default=2000, help="validation expressions (LRA: 2000)")
    listops.add_argument("--test", type=int, default=2000, help="test expressions (LRA: 2000)")
    listops.add_argument("--min-length", type=int, default=500,
                         help="keep expressions longer than this many tokens (LRA: 500)")
    listops.add_argument("--max-length", type=int, default=2000,
                         help="keep expressions shorter than this many tokens (LRA: 2000)")
    listops.add_argument("--seed", type=seed, default=0)
    listops.set_defaults(func=_generate_listops)

    pathfinder = generators.add_parser(
        "pathfinder", help="Pathfinder: DIR/pathfinder{R}/<difficulty>/{imgs,metadata}")
    pathfinder.add_argument("--out", type=Path, required=True, help="data directory to write into")
    pathfinder.add_argument("--resolution", type=int, default=32, choices=(32, 64, 128, 256),
                            help="image side in pixels (128 = Path-X)")
    pathfinder.add_argument("--contour-length", type=int, default=14,
                            help="paddles per target contour: 14 = curv_contour_length_14 (hard, default), "
                                 "9 = curv_contour_length_9, 6 = curv_baseline")
    pathfinder.add_argument("--count", type=int, default=10000, help="images (LRA: 200000 per difficulty)")
    pathfinder.add_argument("--seed", type=seed, default=0)
    pathfinder.set_defaults(func=_generate_pathfinder)

    info = actions.add_parser("info", help="load a task and print its splits, lengths and classes")
    info.add_argument("task")
    info.add_argument("--data-dir", help="where the data lives (default: $SPIKESSM_DATA)")
    info.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a task option, e.g. resolution=64 (also accepted as data.resolution=64)")
    info.set_defaults(func=_info)


def _generate_listops(args) -> int:
    from spikessm.data.generators.listops import write_listops

    if min(args.train, args.val, args.test) < 0:
        raise UserError("--train, --val and --test must not be negative")
    check_writable_dir(args.out)
    start = time.perf_counter()
    folder = write_listops(args.out, args.train, args.val, args.test, min_length=args.min_length,
                           max_length=args.max_length, seed=args.seed, progress=True)
    total = args.train + args.val + args.test
    print(f"wrote {total} expressions to {folder} in {time.perf_counter() - start:.1f} s; "
          f"read them with --task listops --data-dir {args.out}")
    return 0


def _generate_pathfinder(args) -> int:
    from spikessm.data.generators.pathfinder import write_pathfinder

    check_writable_dir(args.out)
    start = time.perf_counter()
    folder = write_pathfinder(args.out, args.count, args.resolution, args.contour_length, seed=args.seed,
                              progress=True)
    seconds = time.perf_counter() - start
    print(f"wrote {args.count} images to {folder} in {seconds:.1f} s ({args.count / seconds:.0f}/s); read "
          f"them with --task pathfinder --data-dir {args.out} --set data.resolution={args.resolution} "
          f"--set data.difficulty={folder.name}")
    return 0


def parse_options(task, assignments: list[str]) -> dict:
    """The task's options with ``key=value`` overrides, each value converted to its default's type."""
    options = dict(task.options)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        key = key.removeprefix("data.")
        if not sep or key not in options:
            raise UserError(f"--set {assignment!r}: expected KEY=VALUE with KEY one of "
                            f"{', '.join(options) or '(task has no options)'}")
        kind = type(options[key])
        try:  # bool("false") is True: a flag takes true or false
            options[key] = {"true": True, "false": False}[value.lower()] if kind is bool else kind(value)
        except (KeyError, ValueError):
            raise UserError(f"--set {assignment!r}: {key} expects a value of type {kind.__name__}") from None
    return options


def _lengths(dataset) -> torch.Tensor | None:
    """Per-sample lengths of a token dataset (through a Subset), or None for fixed-length data."""
    indices = None
    if isinstance(dataset, Subset):
        dataset, indices = dataset.dataset, dataset.indices
    if not hasattr(dataset, "lengths"):
        return None
    lengths = dataset.lengths()
    return lengths if indices is None else lengths[indices]


def _preview(value, shown: int = 20) -> str:
    """A value for one line; lists are cut short, invisible tokens (newline, space) quoted."""
    if not isinstance(value, list):
        return str(value)
    items = [repr(v) if isinstance(v, str) and not (v.isprintable() and v.strip()) else str(v)
             for v in value[:shown]]
    return ", ".join(items) + (f", ... ({len(value)} in all)" if len(value) > shown else "")


def _info(args) -> int:
    task = get_task(args.task)
    splits = task.load(parse_options(task, args.set), resolve_data_dir(args.data_dir))
    kind = splits.kind or task.kind  # a `tensors` file decides its own kind
    print(f"task      {task.name}: {task.description} ({kind})")
    print("splits    " + ", ".join(f"{name} {len(getattr(splits, name))}" for name in ("train", "val", "test")))
    lengths = _lengths(splits.train)
    if lengths is not None:
        per = " per document" if lengths.dim() == 2 else ""
        print(f"length    {int(lengths.max())} max, {lengths.float().mean():.0f} mean{per} (train; "
              f"batches are padded)")
    else:
        x, y = splits.train[0]
        print(f"sample    x {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}, "
              f"y {tuple(torch.as_tensor(y).shape)}")
    info = dict(splits.info)
    if splits.vocab_size:
        vocab = info.pop("vocab", None)
        print(f"vocab     {splits.vocab_size} token ids" + (f": {_preview(vocab)}" if vocab else ""))
    if kind != "lm":
        print(f"classes   {splits.n_classes}")
    for key, value in info.items():
        print(f"{key:9} {_preview(value)}")
    return 0
