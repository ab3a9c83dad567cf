"""The ``spikessm`` command line: train, evaluate, stream, benchmark, and list what exists.

Exit codes: 0 success; 2 a user error (one line on stderr, no traceback); 1 an internal error.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path

from spikessm.argtypes import positive_float, seed
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
    from spikessm.train.distributed import context_from_env
    from spikessm.train.loop import resume, train
    from spikessm.train.stopping import TrainingStopped

    if args.resume:
        fixed = [f"--{name}" for name in ("task", "model", "preset", "epochs", "seed", "out", "set")
                 if getattr(args, name) is not None]
        if args.overwrite:
            fixed.append("--overwrite")
        if fixed:
            raise UserError(f"--resume continues a run exactly as it was configured, so {', '.join(fixed)} "
                            "cannot be given with it (only --data-dir and --quiet); to train differently, "
                            f"start a new run with --preset {Path(args.resume) / 'config.yaml'}")
    else:
        flags = {}
        if args.epochs is not None:
            flags.setdefault("train", {})["epochs"] = args.epochs
        if args.seed is not None:
            flags["seed"] = args.seed
        if args.data_dir is not None:
            flags["data"] = {"dir": args.data_dir}
        cfg = build_config(args.task, args.model, args.preset, flags, args.set or [])
        out = args.out or f"runs/{cfg['model']['name']}_{cfg['task']}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        if args.resume:
            summary = resume(args.resume, args.data_dir, progress=not args.quiet)
        else:
            summary = train(cfg, out, progress=not args.quiet, overwrite=args.overwrite)
    except TrainingStopped as stop:  # interrupted (130, 143) or diverged (3); its line says why
        if str(stop):  # (empty on torchrun processes other than rank 0)
            print(f"spikessm: {stop}", file=sys.stderr)
        return stop.exit_code
    if context_from_env().is_main:
        print(json.dumps({k: summary[k] for k in ("task", "model", "test_accuracy", "test_ppl", "test_bpc",
                                                 "firing_rate", "params", "train_seconds") if k in summary}))
    return 0


def cmd_eval(args) -> int:
    from spikessm.train.evaluation import evaluate_checkpoint

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
        bpc = f"  test bpc {result['bpc']:.4f}" if "bpc" in result else ""
        print(f"test loss {result['loss']:.4f}  test ppl {result['ppl']:.4f}{bpc}")
    else:
        print(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}")
    if result["firing_rate"] is not None:
        print(f"mean firing rate {result['firing_rate']:.4f}")
    return 0


def cmd_report(args) -> int:
    from spikessm.report import make_report

    path = make_report(args.run_dir, args.out, args.data_dir, args.sample)
    print(f"report written to {path} (figures beside it)")
    return 0


def cmd_stream(args) -> int:
    from spikessm.streaming import stream_checkpoint, stream_pretrained

    if (args.checkpoint is None) == (args.pretrained is None):
        raise UserError("spikessm stream takes a CHECKPOINT or --pretrained NAME_OR_DIR (one of them)")
    if args.pretrained is not None:
        result = stream_pretrained(args.pretrained, args.index, args.count, args.data_dir)
    else:
        result = stream_checkpoint(args.checkpoint, args.index, args.count, args.data_dir)
    source = f" ({result['source']})" if "source" in result else ""
    print(f"task {result['task']}{source}  model {result['model']}  {result['steps']} steps per sequence")
    for s in result["samples"]:
        if result["kind"] == "lm":
            print(f"sample {s['index']}: streamed next-token accuracy {s['accuracy']:.4f}, "
                  f"{s['agreement']:.2%} of steps agree with the parallel pass "
                  f"(max |score diff| {s['max_abs_diff']:.2e})")
            continue
        agree = "matches" if s["prediction"] == s["parallel_prediction"] else "DIFFERS FROM"
        print(f"sample {s['index']}: label {s['label']}  streamed prediction {s['prediction']} "
              f"({agree} the parallel pass; max |logit diff| {s['max_abs_diff']:.2e})")
    lat = result["latency_us"]
    print(f"per-step latency: median {lat['median']:.1f} us, p99 {lat['p99']:.1f} us, max {lat['max']:.1f} us")
    return 0


def cmd_export(args) -> int:
    from spikessm.pretrained import export_run

    sample_text = None
    if args.sample_text:
        try:
            sample_text = Path(args.sample_text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--sample-text {args.sample_text}: cannot read it as UTF-8 text ({type(e).__name__})") from None
    out = export_run(args.run_dir, args.out, sample_text)
    print(f"pretrained model written to {out} (config.json + model.safetensors); load it with "
          f"spikessm.from_pretrained({str(out)!r})")
    return 0


def benchmarks_markdown(out: str | None) -> str | None:
    """The Markdown file a benchmark writes: ``--out`` ('' for none); by default the source checkout's
    docs/BENCHMARKS.md, wherever the command runs (none when spikessm is installed without its docs)."""
    if out is not None:
        return out or None
    checkout = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
    return str(checkout) if checkout.is_file() else None


def check_markdown_out(out: str | None) -> None:
    """A benchmark's Markdown file must be writable before the benchmark runs (minutes)."""
    from spikessm.files import check_writable_dir

    if out:
        if Path(out).is_dir():
            raise UserError(f"--out {out} is a directory; give the Markdown file to write")
        check_writable_dir(Path(out).parent, "--out")


def cmd_bench_neurons(args) -> int:
    from spikessm.neurons.benchmark import run_neuron_benchmark

    check_markdown_out(benchmarks_markdown(args.out))
    gpu = args.device == "cuda"  # GPU defaults: the SpikingSSMs comparison's L = 1K..16K, 16 x 256 neurons
    lengths = args.lengths or ([1024, 2048, 4096, 8192, 16384] if gpu else [1024, 4096, 16384])
    rows = run_neuron_benchmark(lengths=lengths, batch=args.batch, channels=args.channels or (256 if gpu else 128),
                                repeats=args.repeats, threads=args.threads, loop_limit_s=args.loop_limit,
                                out_md=benchmarks_markdown(args.out), device=args.device)
    for row in rows:
        time_ms = "-" if row["seconds"] is None else f"{row['seconds'] * 1e3:.1f} ms"
        ratio = "" if row.get("ratio") is None else f"  {row['ratio']:.2f}x GELU"
        print(f"{row['method']:<16} L={row['length']:<6} {time_ms:>12}{ratio}  {row['note']}")
    out = benchmarks_markdown(args.out)
    print(f"table written to {out}" if out else "no table written (give --out FILE to write one)")
    return 0


def cmd_bench_model(args) -> int:
    from spikessm.train.benchmark import PAPER_PRESETS, run_model_benchmark, summary

    if args.all and args.preset:
        raise UserError("give --all or --preset, not both")
    presets = list(PAPER_PRESETS) if args.all else (args.preset or [])
    check_markdown_out(args.out)
    rows = run_model_benchmark(presets, task=args.task, model=args.model, sets=args.set or [], batch=args.batch,
                               length=args.length, repeats=args.repeats, device=args.device, threads=args.threads,
                               out_md=args.out or None, section=args.section, progress=not args.quiet)
    for row in rows:
        print(summary(row))
    failed = [row for row in rows if "error" in row or "ann_error" in row]
    if args.out:
        print(f"table written to {args.out}")
    return 1 if failed else 0


def cmd_sdn_train(args) -> int:
    from spikessm.neurons.sdn import train_sdn

    from spikessm.files import check_writable_dir, load_tensors
    from spikessm.train.checkpoint import first_nonfinite

    chosen = {key: value for key, value in vars(args).items()
              if key in ("tau", "samples", "length", "epochs", "batch_size", "lr", "polish_iterations", "seed")
              and value is not None}  # unset options keep train_sdn's defaults
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give the file to write (e.g. {out / 'sdn.pt'})")
    check_writable_dir(out.parent, "--out")  # before training: fails now, not after minutes
    # trained into a temporary file beside --out, which replaces --out only with finite weights
    scratch = out.parent / f".{out.name}.training.pt"
    try:
        result = train_sdn(scratch, **chosen)
        broken = first_nonfinite(load_tensors(scratch, "Surrogate Dynamic Network weights"))
        if broken is not None:
            print(f"spikessm: the SDN diverged ({broken} is non-finite); nothing written to {out}. "
                  "Lower --lr", file=sys.stderr)
            return 3
        os.replace(scratch, out)
    finally:
        scratch.unlink(missing_ok=True)
    result["path"] = str(out)
    print(json.dumps(result, indent=2))
    return 0


def cmd_sdn_eval(args) -> int:
    from spikessm.neurons.sdn import EVAL_SEED, WEIGHTS, evaluate_baselines, evaluate_sdn, load_sdn

    net = load_sdn(args.weights or WEIGHTS)
    seed = EVAL_SEED if args.seed is None else args.seed
    for tau in args.tau or [float(net.tau)]:
        result = evaluate_sdn(net, tau=tau, n=args.n, length=args.length, seed=seed)
        print(json.dumps({"tau": tau, "method": "sdn", **result}))
        if args.baselines:
            for name, base in evaluate_baselines(tau=tau, n=args.n, length=args.length, seed=seed).items():
                print(json.dumps({"tau": tau, "method": name, **base}))
    return 0


def cmd_tasks(args) -> int:
    from spikessm.data.registry import all_tasks

    for task in all_tasks().values():
        # A nominal length of 0 (task `tensors`): the user's file decides length, classes and kind.
        from_file = task.seq_len == 0
        yours = from_file or "path" in task.options  # chars, words: a text file of the user's
        where = "needs --data-dir" if task.needs_data_dir else "your file" if yours else "embedded/generated"
        length, classes = ("file", "file") if from_file else (task.seq_len, task.n_classes)
        print(f"{task.name:<12} L={length:<6} classes={classes:<6} {'(file)' if from_file else task.kind:<10} "
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
    p.add_argument("--seed", type=seed)
    p.add_argument("--out", help="output directory (default runs/<model>_<task>_<time>)")
    p.add_argument("--data-dir", help="where the data sets live (default $SPIKESSM_DATA)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.d_model=128 (repeatable)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the interrupted run saved in DIR (its last.pt) exactly where it stopped")
    p.add_argument("--overwrite", action="store_true",
                   help="--out may hold another run's files: remove them (it says which) and train anew")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="re-evaluate a checkpoint on its task's test split")
    p.add_argument("checkpoint")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="figures and a Markdown report of a finished training run")
    p.add_argument("run_dir", help="the --out directory of `spikessm train`")
    p.add_argument("--out", help="where to write report.md and the PNGs (default RUN_DIR/report)")
    p.add_argument("--sample", type=int, default=0, help="test sample shown in the spike raster (default 0)")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("stream", help="run test sequences one time step at a time (recurrent mode): classify, or predict next tokens")
    p.add_argument("checkpoint", nargs="?", help="a checkpoint or run directory (or give --pretrained)")
    p.add_argument("--pretrained", metavar="NAME_OR_DIR",
                   help="a shipped pretrained model (spikingssm-sdigits, spikingssm-chars) or a pretrained directory")
    p.add_argument("--index", type=int, default=0, help="first test sample (default 0)")
    p.add_argument("--count", type=positive_int, default=1, help="how many samples (default 1)")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("export", help="write a finished run's best model as config.json + model.safetensors")
    p.add_argument("run_dir", help="the --out directory of `spikessm train`")
    p.add_argument("--out", required=True, help="the pretrained-model directory to write")
    p.add_argument("--sample-text", metavar="FILE",
                   help="language models: a short UTF-8 text shipped with the model for `stream --pretrained`")
    p.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(
        dest="bench", metavar="{neurons,model}", parser_class=Parser, required=True)
    p = bench.add_parser("neurons", help="LIF backends, GELU and peers: forward+backward time")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: GELU, the triton/scan/sdn backends and SpikingJelly's GPU LIF on the first GPU")
    p.add_argument("--lengths", type=positive_int, nargs="+",
                   help="sequence lengths (default 1024 4096 16384; on cuda 1024 2048 4096 8192 16384)")
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--channels", type=positive_int, help="default 128; on cuda 256")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs per cell (median)")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--loop-limit", type=positive_float, default=60.0,
                   help="seconds after which the Python-loop reference is reported as '> limit'")
    p.add_argument("--out", help="Markdown file whose '## Neurons' (on cuda '## Neurons (GPU)') section is "
                   "replaced (default: docs/BENCHMARKS.md of the source checkout; '' to skip)")
    p.set_defaults(func=cmd_bench_neurons)

    p = bench.add_parser("model", help="one training step of a preset's model at its real length: time and "
                         "peak memory, beside its ANN twin (s4d)")
    p.add_argument("--preset", action="append", metavar="P", help="a preset (repeatable; see `spikessm presets`)")
    p.add_argument("--all", action="store_true", help="every paper preset of spikingssm")
    p.add_argument("--task", help="without a preset: the task whose input shape is used (default sdigits)")
    p.add_argument("--model", help="without a preset: the model (default spikingssm)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a config value, as for train")
    p.add_argument("--batch", type=positive_int, help="batch size (default: the preset's)")
    p.add_argument("--length", type=positive_int, help="sequence length (default: the preset's)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed steps per case (median; default 3)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--out", default="docs/BENCHMARKS.md",
                   help="Markdown file whose '## Models' section is replaced ('' to skip)")
    p.add_argument("--section", default="Models", help="the section's title instead of 'Models'")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench_model)

    sdn = sub.add_parser("sdn", help="the Surrogate Dynamic Network of SpikingSSMs").add_subparsers(
        dest="sdn", metavar="{train,eval}", parser_class=Parser, required=True)
    p = sdn.add_parser("train", help="train an SDN on N(0,1) inputs against the exact LIF")
    p.add_argument("--out", required=True, help="where to write the state dict (.pt)")
    # Defaults (None here) are train_sdn's: tau 0.125, 40000 sequences of 1024, 4 epochs of batch 4,
    # lr 0.003, 600 L-BFGS iterations, seed 0.
    p.add_argument("--tau", type=positive_float, help="LIF leak to imitate (default 0.125)")
    p.add_argument("--samples", type=positive_int, help="N(0,1) training sequences (default 40000)")
    p.add_argument("--length", type=positive_int, help="steps per sequence (default 1024)")
    p.add_argument("--epochs", type=positive_int, help="AdamW epochs (default 4)")
    p.add_argument("--batch-size", type=positive_int, help="default 4")
    p.add_argument("--lr", type=positive_float, help="AdamW learning rate (default 0.003)")
    p.add_argument("--polish-iterations", type=int, help="L-BFGS iterations after AdamW (default 600)")
    p.add_argument("--seed", type=seed)
    p.set_defaults(func=cmd_sdn_train)
    p = sdn.add_parser("eval", help="per-step spike accuracy, precision and recall against the exact LIF")
    p.add_argument("weights", nargs="?", help="a state dict from `sdn train` (default: the shipped one)")
    p.add_argument("--tau", type=positive_float, nargs="+", help="LIF taus to compare with (default: the net's)")
    p.add_argument("--n", type=positive_int, default=2000, help="sequences")
    p.add_argument("--length", type=positive_int, default=1024)
    p.add_argument("--seed", type=seed, help="input seed (default 12345, unlike training's 0)")
    p.add_argument("--baselines", action="store_true",
                   help="also score the network-free guesses: LIF without reset, and no memory at all")
    p.set_defaults(func=cmd_sdn_eval)

    from spikessm.data.commands import add_data_commands

    add_data_commands(sub)
    sub.add_parser("tasks", help="list tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("models", help="list models").set_defaults(func=cmd_models)
    sub.add_parser("presets", help="list experiment presets").set_defaults(func=cmd_presets)
    return parser


# errors of writing output that the user can fix: exit 2 with one line, not a traceback
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                 errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}


def main(argv=None) -> int:
    from spikessm.train.stopping import QuietExitOnSignal

    with QuietExitOnSignal(process_exits=argv is None):  # None: run as the `spikessm` program
        return _main(argv)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process meets the same error: one line
            print(f"spikessm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spikessm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`spikessm tasks | head`): stop quietly, as cat does
        sys.stdout = open(os.devnull, "w")  # so that the interpreter's final flush does not fail again
        return 141
    except OSError as e:  # a file that cannot be written (full disk, read-only, a file in the way)
        if e.errno not in OUTPUT_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"spikessm: error: {where}{e.strerror or e} (files saved before are intact)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
