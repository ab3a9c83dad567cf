"""The S4D kernel, blocked Vandermonde product against the materialised formula: forward+backward time and
the memory autograd keeps; updates the "## S4D kernel" section of docs/BENCHMARKS.md.

    python benchmarks/kernel.py --lengths 1024 4096 16384 --d-model 128 --d-state 64
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from spikessm.neurons.benchmark import _machine, write_section
from spikessm.ssm import S4DKernel
from spikessm.ssm.kernel import vandermonde, vandermonde_materialised
from spikessm.train.benchmark import BUSY

DOCS = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
FORMULAS = {"blocked (spikessm)": vandermonde, "materialised exp(dtA l)": vandermonde_materialised}


def measure(formula, kernel: S4DKernel, L: int, repeats: int) -> tuple[float, int]:
    """Median seconds of forward+backward, and the bytes of the tensors autograd keeps for the backward."""
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    def run():
        kernel.zero_grad(set_to_none=True)
        start = time.perf_counter()
        formula(*kernel.discrete(), L).sum().backward()
        return time.perf_counter() - start

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        formula(*kernel.discrete(), L)
    run()  # warm-up
    return statistics.median(run() for _ in range(repeats)), sum(saved.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-state", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file to update (default: %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print the timings only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kernel = S4DKernel(args.d_model, args.d_state)
    machine = _machine()
    lines = ["## S4D kernel", "",
             f"Forward + backward of the S4D kernel (H = {args.d_model}, N = {args.d_state}, one channel, float32), "
             f"median of {args.repeats} runs after a warm-up run; memory = bytes of the tensors autograd keeps "
             "for the backward pass. Speed-up = materialised time / blocked time, measured in the same run.", "",
             "| L | blocked (spikessm) | kept | materialised exp(dtA l) | kept | speed-up |", "|---|---|---|---|---|---|"]
    for L in args.lengths:
        (t_new, m_new), (t_old, m_old) = (measure(f, kernel, L, args.repeats) for f in FORMULAS.values())
        line = (f"| {L} | {t_new * 1e3:.1f} ms | {m_new / 1e6:.1f} MB | {t_old * 1e3:.1f} ms | {m_old / 1e6:.1f} MB "
                f"| {t_old / t_new:.1f}× |")
        print(line, flush=True)
        lines.append(line)
    lines += ["", f"Command: `python benchmarks/kernel.py --lengths {' '.join(map(str, args.lengths))} "
              f"--d-model {args.d_model} --d-state {args.d_state} --repeats {args.repeats} --threads {args.threads}`",
              "", f"Machine: {machine['cpu']}, {machine['cores']} cores, {args.threads} threads; Python "
              f"{machine['python']}, torch {machine['torch']}; {machine['date']}. Load average at start: "
              f"{machine['load']:.2f}" + (BUSY if machine["load"] > 0.5 * (machine["cores"] or 1) else "."), ""]
    if not args.no_write:
        write_section(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
