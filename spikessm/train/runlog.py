"""What a run tells the outside: stderr lines, metrics.jsonl and (optionally) TensorBoard events.

Only rank 0 of a multi-process run writes; the others get a :class:`RunLog` with ``enabled=False``.
TensorBoard event files go to ``<out>/tensorboard`` when the ``tensorboard`` package is installed
(``pip install spikessm[tensorboard]``); without it they are skipped silently.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from spikessm.files import write_atomically


def write_text_atomic(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode()))


def json_safe(value):
    """``value`` with every NaN or infinite float replaced by None (JSON's null): ``json.dumps`` would
    otherwise write a bare ``NaN``, which is not JSON. Dicts, lists and tuples are copied."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    """Strict JSON of ``value`` (non-finite floats become null)."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional extra is not installed
        return None
    return SummaryWriter(str(folder))


class RunLog:
    """``rows``: the metrics of epochs already done (a resumed run's history). metrics.jsonl is
    rewritten from them, so it never holds an epoch that the checkpoint being resumed lacks."""

    def __init__(self, out: Path, rows: list[dict], enabled: bool = True):
        self.enabled = enabled
        self.metrics = self.tensorboard = None
        if enabled:
            path = out / "metrics.jsonl"
            write_text_atomic(path, "".join(dumps(row) + "\n" for row in rows))
            self.metrics = path.open("a")
            self.tensorboard = _tensorboard_writer(out / "tensorboard")

    def info(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    def epoch(self, row: dict) -> None:
        """One epoch's metrics: a line of metrics.jsonl and a point of each TensorBoard curve."""
        if not self.enabled:
            return
        self.metrics.write(dumps(row) + "\n")
        self.metrics.flush()
        if self.tensorboard:
            scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}
            scalars.update({f"firing_rate/{layer}": rate for layer, rate in (row["firing_rates"] or {}).items()})
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        for f in (self.metrics, self.tensorboard):
            if f is not None:
                f.close()
