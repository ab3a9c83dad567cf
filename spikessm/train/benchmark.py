"""One training step of a preset's real model at its real sequence length: time and peak memory.

A step is forward, backward and an AdamW update (the optimizer groups of training) on random inputs of
the task's shape. Each case runs in a fresh child process, so that its peak memory is its own: on CPU the
peak resident set of that process (``ru_maxrss``: torch, the model, the optimizer state and the step's
activations), on CUDA ``torch.cuda.max_memory_allocated``. Time is the median of ``repeats`` steps after
one warm-up step. Every spiking preset is measured next to its ANN twin: the ``s4d`` model with the same
backbone and S4D settings, at the same shapes.

``run_model_benchmark`` returns the rows and can write them into the "## Models" section of
docs/BENCHMARKS.md (or a section of another name); ``spikessm bench model`` calls it.
"""
from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time
import traceback

import torch

from spikessm.data.registry import get_task
from spikessm.errors import UserError
from spikessm.models import build_model
from spikessm.models.spec import COMMON_OPTIONS
from spikessm.neurons.benchmark import _machine, write_section
from spikessm.train.config import build_config, list_presets
from spikessm.train.evaluation import loss_and_hits
from spikessm.train.optim import make_optimizer

SECTION = "Models"  # the default title of the section written
# The papers' long-sequence presets of the spiking SSM, in the order of their tables.
PAPER_PRESETS = tuple(f"spikingssm/{task}" for task in (
    "listops", "text", "retrieval", "image", "pathfinder", "pathx", "smnist", "psmnist", "wikitext103"))
ANN = "s4d"
BUSY = " (the machine was shared with other jobs: times are noisy; memory is not affected)."


def case_config(preset: str | None, task: str | None, model: str | None, sets: list[str]) -> dict:
    """The config of a case, as ``spikessm train`` would build it from the same arguments."""
    return build_config(task=task, model=model, preset=preset, sets=sets)


def ann_twin(cfg: dict) -> dict:
    """The same config with the ANN baseline block: backbone and S4D settings kept, block options dropped."""
    model = {k: v for k, v in cfg["model"].items() if k in COMMON_OPTIONS}
    return {**cfg, "model": {"name": ANN, **model}}


def sequence_length(cfg: dict) -> int:
    """The length a preset trains at: its ``data.seq_len`` if it has one (language modelling), else the
    task's own length."""
    return int(cfg["data"].get("seq_len") or get_task(cfg["task"]).seq_len)


def _inputs(task, batch: int, length: int, generator: torch.Generator):
    """Random ``(x, y, lengths)`` of the task's kind and shape.

    Language-model tokens follow Zipf's law (p ∝ 1 / rank; vocabularies are sorted by frequency), as
    words do: uniform ids would send most targets to an adaptive softmax's largest tail cluster, whose
    scores then take tens of GB (wikitext103), where real text keeps about 80% of them in the head."""
    if task.kind == "lm":
        zipf = 1.0 / torch.arange(1, task.vocab_size + 1, dtype=torch.float64)
        x = torch.multinomial(zipf, batch * (length + 1), replacement=True, generator=generator)
        x = x.view(batch, length + 1)
        return x[:, :-1], x[:, 1:], None
    shape = (batch, 2, length) if task.kind == "retrieval" else (batch, length)
    if task.vocab_size:
        x = torch.randint(task.vocab_size, shape, generator=generator)
    else:
        x = torch.randn(*shape, task.d_input, generator=generator)
    return x, torch.randint(task.n_classes, (batch,), generator=generator), None


def measure_step(cfg: dict, batch: int, length: int, repeats: int, device: str, threads: int) -> dict:
    """Time and peak memory of one training step of ``cfg``'s model; run it in a fresh process."""
    torch.manual_seed(cfg["seed"])
    torch.set_num_threads(threads)
    task = get_task(cfg["task"])
    dev = torch.device(device)
    model = build_model(cfg["model"], task.nominal_splits(), task.kind).to(dev).train()
    optimizer = make_optimizer(model, cfg["train"]["lr"], cfg["train"]["weight_decay"], cfg["train"]["ssm_lr"])
    x, y, lengths = (t if t is None else t.to(dev) for t in _inputs(task, batch, length, torch.Generator().manual_seed(0)))

    def step() -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process's threads)"""
        start, start_cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        loss, _, n = loss_and_hits(model, task.kind, x, y, lengths)
        (loss / n).backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - start, time.process_time() - start_cpu

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    step()  # warm-up: numba compilation, first allocations, the optimizer state
    walls, cpus = zip(*(step() for _ in range(repeats)))
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"seconds": statistics.median(walls), "cpu_seconds": statistics.median(cpus), "peak_bytes": peak,
            "params": sum(p.numel() for p in model.parameters())}


def _child(conn, *args):
    try:
        conn.send(measure_step(*args))
    except BaseException as error:  # reported as the row's note; the parent goes on with the next case
        conn.send({"error": f"{type(error).__name__}: {error}".splitlines()[0][:200],
                   "traceback": traceback.format_exc()})
    finally:
        conn.close()


def measure_in_child(cfg: dict, batch: int, length: int, repeats: int, device: str, threads: int) -> dict:
    """:func:`measure_step` in a fresh process (spawned, so nothing of this one's memory is shared)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    # daemon: ended with this process, so that an interrupted benchmark leaves no orphan holding GBs
    process = context.Process(target=_child, args=(send, cfg, batch, length, repeats, device, threads),
                              daemon=True)
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:  # killed, e.g. by the kernel's out-of-memory killer
        process.join()
        signal = -process.exitcode if process.exitcode and process.exitcode < 0 else None
        result = {"error": f"the measuring process was killed by signal {signal}" + (" (out of memory?)" if signal == 9 else "")
                  if signal else f"the measuring process died (exit code {process.exitcode})"}
    process.join()
    return result


def run_model_benchmark(presets=(), task=None, model=None, sets=(), batch=None, length=None, repeats=3,
                        device="cpu", threads=2, out_md=None, section=SECTION, progress=True) -> list[dict]:
    """One row per case: a preset (or the ``task``/``model`` config when ``presets`` is empty), with its
    ANN twin. ``batch``/``length`` override the preset's batch size and sequence length. Returns rows with
    preset, model, task, length, batch, params, seconds, peak_bytes, and the twin's ``ann_*`` values;
    ``out_md``: a Markdown file whose section "## <section>" is replaced (added if absent)."""
    for name, value in (("--batch", batch), ("--length", length), ("--repeats", repeats), ("--threads", threads)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    known = set(list_presets())
    for preset in presets:
        if preset not in known and not preset.endswith((".yaml", ".yml")):
            raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(known))}")
    cases = [(p, case_config(p, None, None, list(sets))) for p in presets] or \
            [(None, case_config(None, task, model, list(sets)))]
    machine = _machine()
    rows = []
    for preset, cfg in cases:
        n, L = batch or cfg["train"]["batch_size"], length or sequence_length(cfg)
        row = {"preset": preset or f"--task {cfg['task']} --model {cfg['model']['name']}",
               "model": cfg["model"]["name"], "task": cfg["task"], "batch": n, "length": L,
               "device": torch.device(device).type}
        twins = [("", cfg)] + ([("ann_", ann_twin(cfg))] if cfg["model"]["name"] != ANN else [])
        for prefix, config in twins:
            if progress:
                print(f"bench model: {row['preset']} ({config['model']['name']}), batch {n}, L = {L} ...",
                      file=sys.stderr, flush=True)
            result = measure_in_child(config, n, L, repeats, device, threads)
            if "error" in result and progress:
                print(result.get("traceback") or result["error"], file=sys.stderr, flush=True)
            row.update({prefix + k: v for k, v in result.items() if k != "traceback"})
        rows.append(row)
        if progress:
            print(summary(row), file=sys.stderr, flush=True)
    if out_md is not None:
        settings = dict(task=None if presets else task, model=None if presets else model, batch=batch,
                        length=length, repeats=repeats, device=device, threads=threads, sets=list(sets),
                        section=section)
        write_section(out_md, _markdown(rows, settings, presets, machine))
    return rows


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def summary(row: dict) -> str:
    """One line: the case's step time and peak memory, and its ANN twin's."""
    if "error" in row:
        return f"{row['preset']}: {row['error']}"
    text = (f"{row['preset']}: {_time(row['seconds'])} per step ({_time(row['cpu_seconds'])} CPU), "
            f"peak {_gb(row['peak_bytes'])}")
    if "ann_seconds" in row:
        text += (f"; {ANN}: {_time(row['ann_seconds'])} ({_time(row['ann_cpu_seconds'])} CPU), "
                 f"peak {_gb(row['ann_peak_bytes'])}; ratio {ratio(row)}")
    return text


def ratio(row: dict) -> str:
    """Spiking / ANN step time: of CPU time when both ran on the CPU (other jobs on a shared machine
    stretch wall time, hardly CPU time), else of wall time."""
    if "seconds" not in row or "ann_seconds" not in row:
        return ""
    key = "cpu_seconds" if row.get("device", "cpu") == "cpu" else "seconds"
    return f"{row[key] / row['ann_' + key]:.2f}"


def _cells(row: dict, prefix: str) -> list[str]:
    if prefix + "error" in row:
        return [row[prefix + "error"], "", ""]
    if prefix + "seconds" not in row:
        return ["", "", "", ""]
    return [_time(row[prefix + "seconds"]), _time(row[prefix + "cpu_seconds"]), _gb(row[prefix + "peak_bytes"]),
            f"{row[prefix + 'params']:,}"]


def _markdown(rows, settings, presets, machine) -> str:
    memory = "torch.cuda.max_memory_allocated" if settings["device"].startswith("cuda") else \
        "peak resident set of the measuring process (torch itself included, about 0.3 GB)"
    args = (" ".join(f"--preset {p}" for p in presets) if tuple(presets) != PAPER_PRESETS else "--all")
    for flag in ("task", "model", "batch", "length", "repeats", "device", "threads"):
        if settings[flag] is not None:
            args += f" --{flag} {settings[flag]}"
    args += "".join(f" --set {s}" for s in settings["sets"])
    if settings["section"] != SECTION:
        args += f" --section '{settings['section']}'"
    lines = [
        f"## {settings['section']}", "",
        f"One training step (forward, backward, AdamW update) of each preset's model on random inputs of its "
        f"task's shape; median of {settings['repeats']} steps after a warm-up step. Memory: {memory}. "
        f"Each spiking model beside its ANN twin (`{ANN}`, same backbone and S4D settings, same shapes). "
        f"step: wall time; CPU: CPU time of the measuring process (all its threads). ratio = spiking / {ANN} "
        "step time in the same run, of CPU time on the CPU (other jobs on a shared machine stretch wall time, "
        "hardly CPU time), of wall time on a GPU.", "",
        f"| preset | batch | L | step | CPU | peak memory | params | {ANN} step | {ANN} CPU | {ANN} peak | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, ann = _cells(row, ""), _cells(row, "ann_")
        lines.append(f"| {row['preset']} | {row['batch']} | {row['length']} | {' | '.join(ours)} | "
                     f"{' | '.join(ann[:3])} | {ratio(row)} |")
    lines += ["", f"Command: `spikessm bench model {args.strip()}`", "",
              f"Machine: {machine['cpu']}, {machine['cores']} cores, {settings['threads']} thread"
              f"{'s' if settings['threads'] != 1 else ''}; Python "
              f"{machine['python']}, torch {machine['torch']}; {machine['date']}. Load average at start: "
              f"{machine['load']:.2f}" + (BUSY if machine["load"] > 0.5 * (machine["cores"] or 1) else "."), ""]
    return "\n".join(lines)
