"""Time the LIF backends, GELU and peer libraries; update the "## Neurons" section of docs/BENCHMARKS.md.

    python benchmarks/neurons.py --lengths 1024 4096 16384
    python benchmarks/neurons.py --device cuda --lengths 1024 2048 4096 8192 16384 --channels 256
"""

import argparse
from pathlib import Path

from spikessm.neurons.benchmark import run_neuron_benchmark

DOCS = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--loop-limit", type=float, default=60.0, help="seconds; longer runs are skipped")
    parser.add_argument("--out", type=Path, default=DOCS, help="Markdown file to update (default: %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print the timings only")
    args = parser.parse_args()
    run_neuron_benchmark(
        lengths=args.lengths,
        batch=args.batch,
        channels=args.channels,
        repeats=args.repeats,
        threads=args.threads,
        loop_limit_s=args.loop_limit,
        out_md=None if args.no_write else args.out,
        device=args.device,
    )


if __name__ == "__main__":
    main()
