"""Forward+backward time of every LIF backend, of GELU (the yardstick) and of peer libraries, on CPU or GPU.

Each method runs on x of shape (batch, channels, L) float32 (peers on their own (L, batch·channels)
layout, prepared outside the timing): one warm-up call (which also pays numba's or Triton's
compilation), then the median of `repeats` timed calls of forward plus backward of the spikes'
sum-weighted gradient. On a GPU (device="cuda") the methods are those that run there (GELU, the triton,
scan and sdn backends, SpikingJelly's multi-step LIF with a GPU backend), each timed call is bracketed by
torch.cuda.synchronize, and the table goes to its own section, "## Neurons (GPU)".
Methods that loop over time in Python grow linearly with L; a method is not run at a length where the
time it took at the previous length, scaled by the length ratio, would exceed `loop_limit_s`, and its
repeats are cut so that one (method, L) cell costs about `loop_limit_s` at most.

`run_neuron_benchmark` returns the rows and can write them into the "## Neurons" section of
docs/BENCHMARKS.md. `python benchmarks/neurons.py` and `spikessm bench neurons` call it.
"""

import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import torch
import torch.nn.functional as F

from spikessm.errors import UserError
from spikessm.neurons.lif import lif

TAU = 0.125  # SpikingSSMs' LIF (Shen et al., AAAI 2025, arXiv 2408.14909; official code default)
SECTION = "## Neurons"
GPU_SECTION = "## Neurons (GPU)"


def _gelu(x):
    return F.gelu(x)


def _lif(backend):
    return lambda x: lif(x, tau=TAU, backend=backend)


def _lif_triton():
    import triton  # noqa: F401  (without the [gpu] extra: ImportError, reported as "not installed")

    return _lif("triton")


def _time_major(x):
    """(B, H, L) -> (L, B·H), the layout of SpikingJelly's and snnTorch's multi-step neurons."""
    return x.detach().flatten(0, -2).T.contiguous()


def _spikingjelly(backend="torch"):
    """SpikingJelly's multi-step LIFNode; backend "torch", or on a GPU "cupy" or "triton" (whichever the
    installed version and machine have: a missing one raises ImportError, reported as "not installed")."""
    from spikingjelly.activation_based import neuron

    # SpikingJelly's LIF: H = V + (X - (V - V_reset)) / tau_sj, or with decay_input=False
    # H = V·(1 - 1/tau_sj) + X. tau_sj = 1 / (1 - TAU) makes the leak TAU, as ours; detach_reset as ours.
    node = neuron.LIFNode(
        tau=1 / (1 - TAU), decay_input=False, v_threshold=1.0, v_reset=0.0, detach_reset=True, step_mode="m"
    )
    if backend not in node.supported_backends:
        raise ImportError(f"this SpikingJelly has no {backend} backend")
    if backend == "cupy":
        import cupy  # noqa: F401
    node.backend = backend

    def run(x):
        node.reset()
        return node(x)

    return run


def _snntorch():
    import snntorch

    node = snntorch.Leaky(beta=TAU, threshold=1.0, reset_mechanism="zero")

    def run(x):
        mem = torch.zeros_like(x[0])
        spikes = []
        for x_t in x:
            s, mem = node(x_t, mem)
            spikes.append(s)
        return torch.stack(spikes)

    return run


# name -> (factory of the function to time, whether it takes the time-major layout)
METHODS = {
    "GELU (yardstick)": (lambda: _gelu, False),
    "lif fused": (lambda: _lif("fused"), False),
    "lif scan": (lambda: _lif("scan"), False),
    "lif sdn": (lambda: _lif("sdn"), False),
    "lif loop (autograd through a Python loop)": (lambda: _lif("loop"), False),
    "SpikingJelly LIFNode (multi-step, torch backend)": (_spikingjelly, True),
    "snnTorch Leaky (Python loop)": (_snntorch, True),
}
# On CUDA: the Python-loop methods would only measure kernel-launch overhead, and fused is CPU-only.
GPU_METHODS = {
    "GELU (yardstick)": (lambda: _gelu, False),
    "lif triton": (_lif_triton, False),
    "lif scan": (lambda: _lif("scan"), False),
    "lif sdn": (lambda: _lif("sdn"), False),
    "SpikingJelly LIFNode (multi-step, cupy backend)": (lambda: _spikingjelly("cupy"), True),
    "SpikingJelly LIFNode (multi-step, triton backend)": (lambda: _spikingjelly("triton"), True),
}


def _forward_backward_seconds(fn, x, grad) -> float:
    x = x.detach().requires_grad_()
    # GPU work is asynchronous: wait for what came before, then for the call's own kernels.
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn(x).backward(grad)
    sync()
    return time.perf_counter() - start


def _gpu() -> dict:
    props = torch.cuda.get_device_properties(0)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return {"gpu": f"{props.name} ({props.total_memory / 2**30:.0f} GiB)", "cuda": torch.version.cuda,
            "triton": triton_version}


def _machine() -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run_neuron_benchmark(
    lengths=(1024, 4096, 16384),
    batch=16,
    channels=128,
    repeats=5,
    threads=2,
    loop_limit_s=60.0,
    out_md=None,
    progress=True,
    device="cpu",
) -> list[dict]:
    """Time forward+backward of each method at each length; optionally write the Markdown section.

    Returns one dict per (method, length): method, length, seconds (median, None if not run),
    runs (timed calls), ratio (seconds / GELU's at that length), note ("not installed", "> 60 s (est.
    ...)" or the error that stopped it). out_md: a Markdown file whose "## Neurons" section ("## Neurons
    (GPU)" for device="cuda") is replaced (created if missing). device: "cpu" or "cuda" (the first GPU).
    """
    if device not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device here (a CPU build of torch, or no GPU)")
    methods = GPU_METHODS if device == "cuda" else METHODS
    lengths = sorted(lengths)
    previous = (torch.get_num_threads(), numba.get_num_threads())
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    machine = _machine() | (_gpu() if device == "cuda" else {})
    rows = []
    try:
        for name, (factory, time_major) in methods.items():
            try:
                fn = factory()
            except ImportError:
                rows += [_row(name, length, note="not installed") for length in lengths]
                continue

            def inputs(length, time_major=time_major):
                x = torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(length))
                x = _time_major(x) if time_major else x
                grad = torch.rand(x.shape, generator=torch.Generator().manual_seed(length + 1))
                return x.to(device), grad.to(device)

            rows += _measure(name, fn, inputs, lengths, repeats, loop_limit_s, progress)
    finally:
        torch.set_num_threads(previous[0])
        numba.set_num_threads(previous[1])

    gelu = {r["length"]: r["seconds"] for r in rows if r["method"] == "GELU (yardstick)"}
    for r in rows:
        if r["seconds"] is not None and gelu.get(r["length"]):
            r["ratio"] = r["seconds"] / gelu[r["length"]]
    if out_md is not None:
        settings = dict(lengths=lengths, batch=batch, channels=channels, repeats=repeats, threads=threads,
                        loop_limit_s=loop_limit_s, device=device)
        write_section(out_md, _markdown(rows, settings, machine))
    return rows


def _measure(name, fn, inputs, lengths, repeats, limit_s, progress) -> list[dict]:
    """Rows of one method at every length; `inputs(length)` gives (x, upstream gradient)."""
    rows = []
    last = None  # (length, seconds) of the last run, to extrapolate linearly in L
    for i, length in enumerate(lengths):
        estimate = last[1] * length / last[0] if last else 0.0
        if estimate > limit_s:
            rows.append(_row(name, length, note=f"> {limit_s:g} s (est. {estimate:.3g} s; not run)"))
            continue
        x, grad = inputs(length)
        try:
            if last is None:  # warm-up, once per method: numba compilation, first allocations
                _forward_backward_seconds(fn, x, grad)
            first = _forward_backward_seconds(fn, x, grad)
        except Exception as error:  # a missing or broken backend is reported, not fatal
            if progress:
                print(f"{name}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            rows += [_row(name, n, note=f"failed ({type(error).__name__})") for n in lengths[i:]]
            break
        last = (length, first)
        if first > limit_s:
            rows.append(_row(name, length, note=f"> {limit_s:g} s (one run: {first:.3g} s)"))
            continue
        runs = max(1, min(repeats, int(limit_s // first)))  # about limit_s per cell at most
        times = [first] + [_forward_backward_seconds(fn, x, grad) for _ in range(runs - 1)]
        rows.append(_row(name, length, seconds=statistics.median(times), runs=runs))
        last = (length, rows[-1]["seconds"])
        if progress:
            print(f"{name}, L={length}: {rows[-1]['seconds'] * 1e3:.1f} ms ({runs} runs)", file=sys.stderr, flush=True)
    return rows


def _row(method, length, seconds=None, runs=0, note=""):
    return {"method": method, "length": length, "seconds": seconds, "runs": runs, "ratio": None, "note": note}


def _cell(row) -> str:
    if row["seconds"] is None:
        return row["note"]
    seconds = row["seconds"]
    shown = f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"
    return f"{shown} ({row['ratio']:.1f}×)" if row["ratio"] is not None else shown


def _markdown(rows, settings, machine) -> str:
    lengths = settings["lengths"]
    gpu = settings.get("device") == "cuda"
    command = (
        f"python benchmarks/neurons.py --lengths {' '.join(map(str, lengths))} --batch {settings['batch']} "
        f"--channels {settings['channels']} --repeats {settings['repeats']} --threads {settings['threads']} "
        f"--loop-limit {settings['loop_limit_s']:g}" + (" --device cuda" if gpu else "")
    )
    lines = [
        GPU_SECTION if gpu else SECTION,
        "",
        f"Forward + backward of spikes for x of shape ({settings['batch']}, {settings['channels']}, L) float32, "
        f"tau {TAU}, threshold 1, hard reset; median of up to {settings['repeats']} runs after a warm-up run "
        "(which pays numba's compilation). In parentheses: time relative to GELU forward+backward on the same "
        "tensor in the same run. Peers run on the time-major layout (L, batch·channels) that they expect."
        + (" On the GPU, each timed call starts and ends with torch.cuda.synchronize; the warm-up pays "
           "Triton's compilation." if gpu else ""),
        "",
        "| method | " + " | ".join(f"L = {n}" for n in lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = {r["length"]: _cell(r) for r in rows if r["method"] == method}
        lines.append(f"| {method} | " + " | ".join(cells[n] for n in lengths) + " |")
    busy = machine["load"] > 0.5 * (machine["cores"] or 1)
    if gpu:
        lines += ["", f"GPU: {machine['gpu']}; CUDA {machine['cuda']}, Triton {machine['triton']}."]
    lines += [
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {settings['threads']} threads; Python "
        f"{machine['python']}, torch {machine['torch']}, numba {machine['numba']}; {machine['date']}. "
        f"Load average at start: {machine['load']:.2f}"
        + (" (the machine was shared with other jobs: expect noise of tens of percent)." if busy else "."),
        "",
    ]
    return "\n".join(lines)


def write_section(path, section: str) -> None:
    """Replace the Markdown section starting with section's first line in `path` (append it if absent)."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = section.splitlines()[0]
    start = text.find(f"\n{heading}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
