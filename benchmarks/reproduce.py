"""Small-scale reproduction: every model on small tasks at an equal budget, several seeds.

    python benchmarks/reproduce.py --tasks sdigits psdigits --seeds 0 1 2 --epochs 10 \
        --out docs/RESULTS.md
    python benchmarks/reproduce.py --tasks listops --preset small/listops --epochs 10 \
        --set data.dir=runs/data/listops-small --set data.l_max=128 --section results-listops
    python benchmarks/reproduce.py --tasks sfmnist --preset small/sfmnist --epochs 6 \
        --set data.train_samples=4000 --set data.eval_samples=500 --section results-sfmnist

docs/RESULTS.md has the exact commands, including how the ListOps data was generated.

Each (model, task, seed) is one `spikessm train` run into runs/reproduce/<task>/<model>/seed<S>;
runs that already have a summary.json are reused, so an interrupted sweep continues where it
stopped. The table (accuracy mean ± std, firing rate, energy relative to the ANN equivalent) is
written between the markers of the section it owns in the output file.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from spikessm.models import all_models
from spikessm.train.evaluation import evaluate_checkpoint

MODELS = ["s4d", "binary-s4d", "binary-s4d-gsu", "s4d-gsu", "spikingssm", "transformer", "rsnn"]


def run(task: str, model: str, seed: int, epochs: int, extra: list[str], root: Path) -> dict:
    """One run's summary (extra: more `spikessm train` arguments), with the energy rows re-counted
    from its best checkpoint (so runs made before a change to the energy rules are counted by the
    current ones)."""
    out = root / task / model / f"seed{seed}"
    summary = out / "summary.json"
    if not summary.exists():
        cmd = [sys.executable, "-m", "spikessm", "train", "--task", task, "--model", model,
               "--seed", str(seed), "--epochs", str(epochs), "--out", str(out), "--quiet", *extra]
        print(" ".join(cmd[2:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    result = json.loads(summary.read_text())
    data_dir = next((s.split("=", 1)[1] for s in extra if s.startswith("data.dir=")), None)
    result["energy"] = evaluate_checkpoint(out / "best.pt", data_dir)["energy"]
    return result


def cell(values: list[float], fmt: str = "{:.1f}", scale: float = 100.0) -> str:
    values = [v * scale for v in values]
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def metric(run: dict) -> tuple[str, float, str, float]:
    """(name, value, format, scale) of a run's headline number: test accuracy %, or for language
    models bits per character (character level) or perplexity."""
    if "test_bpc" in run:
        return "test bits per character", run["test_bpc"], "{:.3f}", 1.0
    if "test_ppl" in run:
        return "test perplexity", run["test_ppl"], "{:.1f}", 1.0
    return "test accuracy %", run["test_accuracy"], "{:.1f}", 100.0


def table(results: dict, tasks: list[str], models: list[str]) -> str:
    lines = ["| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for model in models:
        cells = []
        for task in tasks:
            runs = results[task][model]
            _, _, fmt, scale = metric(runs[0])
            head = cell([metric(r)[1] for r in runs], fmt, scale)
            rate = [r["firing_rate"] for r in runs if r["firing_rate"] is not None]
            energy = [r["energy"]["energy_j"] / r["energy"]["ann_energy_j"] for r in runs]
            # a model without a feature-mixing layer (the transformer) has no E_mix
            mixing = [r["energy"]["mixing_energy_j"] / r["energy"]["mixing_ann_energy_j"] for r in runs
                      if r["energy"]["mixing_ann_energy_j"]]
            extra = f"fr {cell(rate, '{:.1f}')}%, " if rate else ""
            size = f", {runs[0]['params'] / 1000:.0f}k params, {statistics.mean(r['train_seconds'] for r in runs):.0f} s"
            mix = f", E_mix {cell(mixing, '{:.0f}')}%" if mixing else ""
            cells.append(f"{head} ({extra}E {cell(energy, '{:.0f}')}%{mix}{size})")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(path: Path, name: str, body: str) -> None:
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sdigits", "psdigits"])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--preset", help="a preset for every run (without a model name, e.g. small/listops)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to every run (e.g. data.dir=... or train.threads=1)")
    parser.add_argument("--model-set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="passed to that model's runs only (e.g. rsnn:model.n_layers=2)")
    parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--section", default="results-small")
    args = parser.parse_args()
    extra = (["--preset", args.preset] if args.preset else []) + [a for s in args.set for a in ("--set", s)]
    start = time.time()
    own = {m: [] for m in all_models()}  # a setting for a model not in --models is simply not used
    for item in args.model_set:
        model, _, setting = item.partition(":")
        if model not in own or "=" not in setting:
            parser.error(f"--model-set {item!r}: expected MODEL:KEY=VALUE with MODEL one of {', '.join(own)}")
        own[model] += ["--set", setting]
    results = {t: {m: [run(t, m, s, args.epochs, extra + own[m], args.runs) for s in args.seeds] for m in args.models}
               for t in args.tasks}
    command = " ".join(["python benchmarks/reproduce.py", "--tasks", *args.tasks, "--models", *args.models,
                        "--seeds", *map(str, args.seeds), "--epochs", str(args.epochs),
                        *(["--preset", args.preset] if args.preset else []),
                        *[f"--set {s}" for s in args.set], *[f"--model-set {s}" for s in args.model_set],
                        "--section", args.section])
    runs = [r for by_model in results.values() for seeds in by_model.values() for r in seeds]
    trained = sum(r["train_seconds"] for r in runs)
    headline = metric(runs[0])[0]
    body = (f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {len(args.seeds)} seeds; the {len(runs)} runs "
            f"trained for {trained:.0f} s in all; this call ran for {time.time() - start:.0f} s)\n\n"
            f"Cells: {headline} (mean ± std over seeds), then the mean firing rate of the "
            "spiking layers (fr), the energy of the whole model relative to the same model priced "
            "as an ANN (E), and the same ratio for the feature-mixing layers alone (E_mix, the part "
            "SpikingSSMs counts), the parameters and the mean training seconds of a run (one thread each, "
            "on a machine shared with the other runs).\n\n"
            + table(results, args.tasks, args.models))
    write_section(args.out, args.section, body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
