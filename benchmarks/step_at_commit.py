"""One training step of the paper-scale test model, measured with whatever spikessm is importable, so that an
older checkout can be measured exactly like this one (`spikessm bench model` did not exist before it):

    git worktree add /tmp/old 913f5b1
    PYTHONPATH=/tmp/old python benchmarks/step_at_commit.py s4d --length 16384 --batch 8 --threads 1
    python benchmarks/step_at_commit.py s4d --length 16384 --batch 8 --threads 1

The model: task smnist's input, d_model 128, d_state 64, 4 causal layers (the issue-9 acceptance case).
Prints wall and CPU seconds (median of --repeats steps after a warm-up) and the process's peak resident set.
"""
import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

import spikessm
from spikessm.data.registry import get_task
from spikessm.train.config import build_config
from spikessm.train.optim import make_optimizer

try:
    from spikessm.models import build_model
except ImportError:  # checkouts before ModelConfig
    from spikessm.models.registry import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["s4d", "spikingssm"])
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = build_config(task="smnist", model=args.model,
                       sets=["model.d_model=128", "model.n_layers=4", "model.d_state=64"])
    task = get_task("smnist")
    model = build_model(cfg["model"], task.nominal_splits(), task.kind).train()
    optimizer = make_optimizer(model, 0.001, 0.01, 0.001)
    x, y = torch.randn(args.batch, args.length, 1), torch.randint(10, (args.batch,))

    def step():
        wall, cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        return time.perf_counter() - wall, time.process_time() - cpu

    step()
    walls, cpus = zip(*(step() for _ in range(args.repeats)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"{args.model} L={args.length} batch={args.batch} threads={args.threads} ({spikessm.__file__}): "
          f"wall {statistics.median(walls):.2f} s, CPU {statistics.median(cpus):.2f} s, peak {peak:.2f} GB")


if __name__ == "__main__":
    main()
