"""``spikessm report RUN_DIR``: figures and a Markdown page for a finished training run.

Reads the run's summary.json, metrics.jsonl and best.pt (and one test sample for the raster, which is
left out with a note when the data cannot be read), and writes into ``RUN_DIR/report/``:

  curves.png   loss and accuracy per epoch, train and validation
  firing.png   validation firing rate of every spiking layer per epoch       (spiking models)
  raster.png   the spikes of one test sample in every spiking layer, channels x time  (spiking models)
  energy.png   energy per sample and layer, the spiking model beside its ANN equivalent
  report.md    the figures with the summary numbers and the per-layer table

Drawn with matplotlib off-screen (the Agg backend).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from spikessm.data.collate import stack_collate
from spikessm.data.loading import load_data
from spikessm.errors import UserError
from spikessm.files import check_writable_dir
from spikessm.metrics.firing import spiking_layers
from spikessm.pretrained import load_model
from spikessm.train.evaluation import seed_everything


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """(summary, metrics rows) of a finished run."""
    if not (run_dir / "summary.json").is_file():
        hint = (f"; it stopped early: finish it with spikessm train --resume {run_dir}"
                if (run_dir / "last.pt").is_file() else "")
        raise UserError(f"{run_dir} holds no summary.json: not the output of a finished run{hint}")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return summary, rows


@torch.no_grad()
def spike_trains(checkpoint: Path, index: int, data_dir: str | None = None) -> tuple[dict[str, np.ndarray], int]:
    """The output of every spiking layer for test sample ``index``: {layer: (channels, time)}, and
    the sample's label. (A retrieval pair shows its first document.)"""
    model = load_model(checkpoint)
    cfg = model.info["config"]
    if data_dir:
        cfg["data"]["dir"] = data_dir
    task, splits = load_data(cfg)
    if not 0 <= index < len(splits.test):
        raise UserError(f"--sample must lie in [0, {len(splits.test) - 1}]")
    seed_everything(cfg["seed"])  # Bernoulli spikes draw at inference too
    trains, handles = {}, []
    for name, layer in spiking_layers(model).items():
        def record(module, inputs, output, name=name):  # output (B, H, L); B = 2 for a retrieval pair
            trains[name] = output[0].float().numpy()
        handles.append(layer.register_forward_hook(record))
    x, y, lengths = (splits.collate or stack_collate)([splits.test[index]])
    model(x, lengths)
    for h in handles:
        h.remove()
    label = int(y[0]) if y.dim() == 1 else -1  # a language model's target is a sequence
    return trains, label


def _epoch_axis(ax, epochs: list[int]) -> None:
    """Whole-epoch ticks (at most about ten), with room around a run of a single epoch."""
    ax.set_xlabel("epoch")
    ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    ax.set_xticks(range(epochs[0], epochs[-1] + 1, math.ceil(len(epochs) / 10)))


def plot_curves(plt, rows: list[dict], lm: bool, path: Path) -> None:
    epochs = [r["epoch"] for r in rows]
    best = max(rows, key=lambda r: -r["val_loss"] if lm else r["val_accuracy"])["epoch"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in zip(axes, ("loss", "accuracy"),
                              ("cross-entropy loss (nats)", "next-token accuracy" if lm else "accuracy")):
        for split, style in (("train", "o-"), ("val", "s--")):
            values = [np.nan if r[f"{split}_{key}"] is None else r[f"{split}_{key}"] for r in rows]
            ax.plot(epochs, values, style, label="validation" if split == "val" else "train")
        ax.axvline(best, color="grey", linestyle=":", label=f"best.pt (epoch {best})")
        _epoch_axis(ax, epochs)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_firing(plt, rows: list[dict], path: Path) -> None:
    epochs = [r["epoch"] for r in rows]
    layers = list(rows[-1]["firing_rates"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, layer in enumerate(layers):  # markers and transparency keep coinciding curves visible
        ax.plot(epochs, [r["firing_rates"].get(layer, np.nan) for r in rows], marker="os^Dv<>p"[i % 8],
                markersize=8 - 5 * i / max(1, len(layers) - 1), alpha=0.8, label=layer)
    ax.plot(epochs, [r["firing_rate"] for r in rows], "k--", linewidth=2, label="mean")
    _epoch_axis(ax, epochs)
    ax.set_ylabel("firing rate on validation\n(nonzero outputs / (samples x steps x channels))")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_raster(plt, trains: dict[str, np.ndarray], title: str, path: Path) -> None:
    fig, axes = plt.subplots(len(trains), 1, figsize=(10, 0.6 + 1.9 * len(trains)), sharex=True, squeeze=False)
    for ax, (layer, spikes) in zip(axes[:, 0], trains.items()):
        ternary = bool((spikes < 0).any())  # GSU's Ter(x) in {-1, 0, 1}: -1 blue, +1 red
        ax.imshow(spikes, aspect="auto", interpolation="nearest", cmap="bwr" if ternary else "Greys",
                  vmin=-1 if ternary else 0, vmax=1)
        colours = "red = +1, blue = -1" if ternary else "black = spike"
        ax.set_title(f"{layer}: {np.count_nonzero(spikes) / spikes.size:.3f} of outputs nonzero ({colours})",
                     fontsize="medium")
        ax.set_ylabel("channel")
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_energy(plt, layers: list[dict], total: dict, path: Path) -> None:
    names = [r["layer"] for r in layers]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * len(names)))
    ax.barh(y - 0.2, [r["energy_j"] for r in layers], height=0.4, label="this model")
    ax.barh(y + 0.2, [r["ann_energy_j"] for r in layers], height=0.4, label="ANN equivalent (all MACs)")
    ax.set_yticks(y, names)
    ax.invert_yaxis()  # the encoder on top, as data flows
    ax.set_xscale("log")
    ax.set_xlabel("energy per sample (J, 45 nm: 4.6 pJ/MAC, 0.9 pJ/AC)")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"total {total['energy_j']:.3g} J; the ANN equivalent needs {total['ann_energy_j']:.3g} J "
                 f"({total['ann_energy_j'] / total['energy_j']:.2f}x)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_markdown(summary: dict, figures: dict[str, str], notes: list[str], path: Path) -> None:
    lm = "test_ppl" in summary
    e = summary["energy"]
    rate = summary["firing_rate"]
    numbers = [
        ["test perplexity" if lm else "test accuracy",
         f"{summary['test_ppl']:.2f}" if lm else f"{summary['test_accuracy']:.4f}"],
        *([["test bits per character", f"{summary['test_bpc']:.4f}"]] if "test_bpc" in summary else []),
        ["test loss", f"{summary['test_loss']:.4f}"],
        ["mean firing rate", "- (no spiking layers)" if rate is None else f"{rate:.4f}"],
        ["energy per sample", f"{e['energy_j']:.3g} J ({e['mac']:.3g} MACs, {e['ac']:.3g} ACs)"],
        ["ANN-equivalent energy", f"{e['ann_energy_j']:.3g} J ({e['ann_energy_j'] / e['energy_j']:.2f}x)"],
        ["parameters", f"{summary['params']:,}"],
        ["epochs", str(summary["epochs"])],
        ["training time", f"{summary['train_seconds']:.0f} s"
                          + (f" on {summary['world_size']} processes" if summary.get("world_size", 1) > 1 else "")],
        ["seed", str(summary.get("seed", "-"))],
    ]
    layer_rows = [[r["layer"], "-" if r["firing_rate"] is None else f"{r['firing_rate']:.4f}", f"{r['mac']:.4g}",
                   f"{r['ac']:.4g}", f"{r['energy_j']:.4g}", f"{r['ann_energy_j']:.4g}"] for r in summary["layers"]]
    captions = {"curves": "Loss and accuracy per epoch",
                "firing": "Firing rate per spiking layer (validation set, after each epoch)",
                "raster": "Spike raster of one test sample", "energy": "Energy per sample and layer"}
    parts = [f"# {summary['model']} on {summary['task']}", _table(["", ""], numbers)]
    for key, file in figures.items():
        parts += [f"## {captions[key]}", f"![{captions[key]}]({file})"]
        if key == "energy":
            parts.append(_table(["layer", "firing rate", "MACs", "ACs", "energy (J)", "ANN energy (J)"], layer_rows))
    parts += notes
    path.write_text("\n\n".join(parts) + "\n")


def make_report(run_dir: str | Path, out_dir: str | Path | None = None, data_dir: str | None = None,
                sample: int = 0) -> Path:
    """Draw the figures and write report.md (into ``RUN_DIR/report`` by default); returns its path."""
    run_dir = Path(run_dir)
    summary, rows = read_run(run_dir)
    out = check_writable_dir(Path(out_dir) if out_dir else run_dir / "report", "--out")
    plt = _pyplot()
    lm = "test_ppl" in summary
    figures, notes = {"curves": "curves.png"}, []
    plot_curves(plt, rows, lm, out / "curves.png")
    if summary["firing_rate"] is None:
        notes.append(f"{summary['model']} has no spiking layers, so there are no firing-rate or raster figures.")
    else:
        plot_firing(plt, rows, out / "firing.png")
        figures["firing"] = "firing.png"
        try:
            trains, label = spike_trains(run_dir / "best.pt", sample, data_dir)
        except UserError as e:  # the raster needs a test sample; everything else comes from the run's files
            if "--sample" in str(e):
                raise
            notes.append(f"No spike raster: its test sample could not be read ({e}).")
        else:
            about = f"test sample {sample}" + (f" (label {label})" if label >= 0 else "")
            plot_raster(plt, trains, f"{summary['model']} on {summary['task']}, {about}", out / "raster.png")
            figures["raster"] = "raster.png"
    plot_energy(plt, summary["layers"], summary["energy"], out / "energy.png")
    figures["energy"] = "energy.png"
    write_markdown(summary, figures, notes, out / "report.md")
    return out / "report.md"
