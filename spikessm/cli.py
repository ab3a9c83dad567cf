"""The ``spikessm`` command line: train, evaluate, stream, benchmark, and list what exists.

Exit codes: 0 success; 2 a user error (one line on stderr, no traceback); 1 an internal error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from spikessm.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# ---------------------------------------------------------------- commands

def cmd_train(args) -> int:
    from spikessm.train.config import build_config
    from spikessm.train.loop import train

    flags = {}
    if args.epochs is not None:
        flags.setdefault("train", {})["epochs"] = args.epochs
    if args.seed is not None:
        flags["seed"] = args.seed
    if args.data_dir is not None:
        flags["data"] = {"dir": args.data_dir}
    cfg = build_config(args.task, args.model, args.preset, flags, args.set or [])
    out = args.out or f"runs/{cfg['model']['name']}_{cfg['task']}_{time.strftime('%Y%m%d-%H%M%S')}"
    summary = train(cfg, out, progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in ("task", "model", "test_accuracy", "test_ppl",
                                             "firing_rate", "params", "train_seconds") if k in summary}))
    return 0


def cmd_eval(args) -> int:
    from spikessm.train.loop import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device)
    print(f"task {result['task']}  model {result['model']}")
    print(f"{'layer':<12} {'firing':>8} {'MACs':>12} {'ACs':>12} {'energy (J)':>12} {'ANN (J)':>12}")
    for row in result["layers"]:
        rate = "-" if row["firing_rate"] is None else f"{row['firing_rate']:.4f}"
        print(f"{row['layer']:<12} {rate:>8} {row['mac']:>12.4g} {row['ac']:>12.4g} "
              f"{row['energy_j']:>12.4g} {row['ann_energy_j']:>12.4g}")
    e = result["energy"]
    print(f"{'total':<12} {'':>8} {e['mac']:>12.4g} {e['ac']:>12.4g} {e['energy_j']:>12.4g} "
          f"{e['ann_energy_j']:>12.4g}")
    if "ppl" in result:
        print(f"test loss {result['loss']:.4f}  test ppl {result['ppl']:.4f}")
    else:
        print(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}")
    if result["firing_rate"] is not None:
        print(f"mean firing rate {result['firing_rate']:.4f}")
    return 0


def cmd_stream(args) -> int:
    from spikessm.streaming import stream_checkpoint

    result = stream_checkpoint(args.checkpoint, args.index, args.count, args.data_dir)
    print(f"task {result['task']}  model {result['model']}  {result['steps']} steps per sequence")
    for s in result["samples"]:
        agree = "matches" if s["prediction"] == s["parallel_prediction"] else "DIFFERS FROM"
        print(f"sample {s['index']}: label {s['label']}  streamed prediction {s['prediction']} "
              f"({agree} the parallel pass; max |logit diff| {s['max_abs_diff']:.2e})")
    lat = result["latency_us"]
    print(f"per-step latency: median {lat['median']:.1f} us, p99 {lat['p99']:.1f} us, max {lat['max']:.1f} us")
    return 0


def cmd_tasks(args) -> int:
    from spikessm.data.registry import all_tasks

    for task in all_tasks().values():
        where = "needs --data-dir" if task.needs_data_dir else "embedded/generated"
        print(f"{task.name:<12} L={task.seq_len:<6} classes={task.n_classes:<6} {task.kind:<10} "
              f"{task.description} [{where}]")
    return 0


def cmd_models(args) -> int:
    from spikessm.models.registry import all_models

    for spec in all_models().values():
        print(f"{spec.name:<16} {'spiking' if spec.spiking else 'ANN':<8} {spec.description}")
    return 0


def cmd_presets(args) -> int:
    from spikessm.train.config import list_presets

    for name in list_presets():
        print(name)
    return 0


# ---------------------------------------------------------------- parser

def build_parser() -> Parser:
    parser = Parser(prog="spikessm", description="Spiking state space models for long sequences.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("train", help="train a model (default: the default model on sdigits)")
    p.add_argument("--task", help="task name (see `spikessm tasks`)")
    p.add_argument("--model", help="model name (see `spikessm models`)")
    p.add_argument("--preset", help="preset name (see `spikessm presets`) or a YAML file")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output directory (default runs/<model>_<task>_<time>)")
    p.add_argument("--data-dir", help="where the data sets live (default $SPIKESSM_DATA)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.d_model=128 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="re-evaluate a checkpoint on its task's test split")
    p.add_argument("checkpoint")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("stream", help="classify test sequences one time step at a time (recurrent mode)")
    p.add_argument("checkpoint")
    p.add_argument("--index", type=int, default=0, help="first test sample (default 0)")
    p.add_argument("--count", type=positive_int, default=1, help="how many samples (default 1)")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_stream)

    sub.add_parser("tasks", help="list tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("models", help="list models").set_defaults(func=cmd_models)
    sub.add_parser("presets", help="list experiment presets").set_defaults(func=cmd_presets)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"spikessm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spikessm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
