"""Surrogate Dynamic Network (SDN): a tiny causal CNN that stands in for the hard-reset LIF time loop.

SpikingSSMs (Shen et al., AAAI 2025, arXiv 2408.14909, "Parallel training"): an LIF neuron with fixed
parameters is a deterministic map from input currents to spikes, so a small pre-trained network can
learn it. The network predicts the decayed after-reset potential m_t = tau · u_{t-1} from the inputs
before t; spikes then follow for all t at once as

    s_t = H(m_t + x_t - 1).

During task training the network runs in inference mode and without gradient; the surrogate gradient
reaches x_t only, never the membrane history.

It is an approximation tied to the tau it was trained for. The shipped weights (`sdn_tau0125.pt`) were
trained here at tau 0.125, threshold 1 (the official checkpoint's setting); docs/BENCHMARKS.md lists
how they do at other tau. `train_sdn` trains a new network, `evaluate_sdn` measures one.
"""

import functools
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spikessm.errors import UserError
from spikessm.files import load_tensors, save_tensors
from spikessm.neurons.step import lif_step
from spikessm.neurons.surrogates import spike

TRAINED_TAU = 0.125
WEIGHTS = Path(__file__).with_name("sdn_tau0125.pt")

# The official setup: inputs N(0, 1), length 1024, AdamW lr 0.01 / wd 0.01, batch 64, 100 epochs,
# cosine schedule, SmoothL1 loss on m_t, 10% of the data held out [SpikingSSMs; official code
# train.py / generate.py]. Ours, to train in minutes on one CPU core: 40k sequences, 4 epochs of batch
# 4 (small batches = more optimizer steps, and steps, not data, are what this 193-parameter network is
# short of), lr 0.003 (0.01 with batch 4 ended in worse minima), then an L-BFGS polish (`_polish`).
DEFAULT_SAMPLES = 40_000
DEFAULT_EPOCHS = 4
DEFAULT_BATCH = 4
DEFAULT_LR = 0.003
DEFAULT_POLISH_ITERATIONS = 600
EVAL_SEED = 12345  # fresh data for evaluation: the shipped weights were trained from seed 0
POLISH_SEQUENCES = 500  # 500 x 1024 windows: plenty for 193 parameters, 16 MB per activation

class SDN(nn.Module):
    """The SDN of SpikingSSMs: 193 parameters, receptive field x_{t-8..t-1}.

    Layers as the paper lists them, "C8k1 - C8k8p8g8 - Trunc - BN relu + C8k1 - BN + relu - C1k1",
    the `+ ... +` being a residual [SpikingSSMs, Sec. "Parallel training"].
    `tau` is stored as a buffer so that a saved state dict says which LIF it imitates.
    """

    def __init__(self, tau: float = TRAINED_TAU, channels: int = 8, kernel_size: int = 8):
        super().__init__()
        self.encoder = nn.Conv1d(1, channels, 1, bias=False)
        # Padding k on both sides then keeping the first L outputs makes output t see x_{t-k..t-1}:
        # strictly causal, since m_t = tau · u_{t-1} must not depend on x_t.
        self.temporal = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size, groups=channels)
        self.temporal_norm = nn.BatchNorm1d(channels)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.mix_norm = nn.BatchNorm1d(channels)
        self.decoder = nn.Conv1d(channels, 1, 1)
        self.register_buffer("tau", torch.tensor(float(tau)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: input currents (N, L) -> predicted m_t = tau · u_{t-1}, (N, L)."""
        length = x.shape[-1]
        h = self.encoder(x.unsqueeze(1))
        h = F.relu(self.temporal_norm(self.temporal(h)[..., :length]))
        h = F.relu(self.mix_norm(self.mix(h)) + h)
        return self.decoder(h).squeeze(1)


def lif_potential(x: torch.Tensor, tau: float, threshold: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and m_t = tau · u_{t-1} of the hard-reset LIF (at threshold 1: the SDN's training target).

    x: (..., L). Returns (spikes, m), both (..., L). Steps through `lif_step`, the arithmetic of the
    `loop` backend, so H(m_t + x_t - threshold) reproduces its spikes bit for bit. threshold=inf gives
    the LIF without reset (a baseline).
    """
    if not 0 <= tau <= 1:
        raise UserError(f"tau must lie in [0, 1]; got {tau:g}")
    u = torch.zeros_like(x[..., 0])
    spikes, potentials = [], []
    with torch.no_grad():
        for x_t in x.movedim(-1, 0).contiguous():  # time-major copy: each step reads contiguous memory
            potentials.append(tau * u)
            s, u = lif_step(x_t, u, tau, threshold, reset="hard")
            spikes.append(s)
    return torch.stack(spikes, dim=-1), torch.stack(potentials, dim=-1)


def load_sdn(path: str | os.PathLike = WEIGHTS) -> SDN:
    """An SDN in eval mode with the weights in `path` (a plain state dict; default: the shipped one)."""
    state = load_tensors(path, "Surrogate Dynamic Network weights")
    try:
        net = SDN(tau=float(state["tau"]))
        net.load_state_dict(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError):  # not a dict, no tau, wrong keys
        raise UserError(f"SDN weights {path} do not hold a state dict of spikessm's SDN "
                        "(write one with `spikessm sdn train`)") from None
    return net.eval().requires_grad_(False)


def predict_potential(net: SDN, x: torch.Tensor) -> torch.Tensor:
    """m_t predicted by `net` in eval mode for inputs x (N, L) -> (N, L), without gradient.

    Rows go through in chunks: the network's activations are 8x the input, too big at long L.
    """
    was_training = net.training
    net.eval()
    with torch.no_grad():
        potential = torch.cat([net(chunk) for chunk in x.split(max(1, 2**20 // x.shape[-1]))])
    net.train(was_training)
    return potential


@functools.lru_cache(maxsize=None)
def _shipped_sdn(device: torch.device, dtype: torch.dtype) -> SDN:
    return load_sdn().to(device=device, dtype=dtype)


def _fixed_value(value) -> float | None:
    """`value` as one float if it is a float or a constant tensor that does not require grad, else None."""
    if isinstance(value, torch.Tensor):
        if value.requires_grad or value.numel() == 0 or not (value == value.flatten()[0]).all():
            return None
        return float(value.flatten()[0])
    return float(value)


def sdn_lif(x, tau=TRAINED_TAU, threshold=1.0, reset="hard", surrogate="triangle") -> torch.Tensor:
    """LIF spikes predicted by the shipped SDN: the `sdn` backend of `spikessm.neurons.lif`.

    x: input currents (..., L), time last. tau: must be 0.125 (a float or a constant tensor; the
    network was trained for that one value). threshold: float or tensor broadcastable to x[..., 0],
    may require grad. reset: must be "hard". Returns spikes in {0, 1}, shaped and typed like x.

    Any threshold works through Property 1 of SpikingSSMs, f(I; v_th) = f(I / v_th; 1): the network
    sees x / threshold. The gradient reaches x and threshold through the spike's surrogate only; its
    input is (v_t - threshold) / threshold, where the `loop` backend has v_t - threshold.
    """
    if reset != "hard":
        raise UserError(f"backend 'sdn' supports reset='hard' only; got {reset!r} (use backend 'fused' or 'scan')")
    fixed_tau = _fixed_value(tau)
    if fixed_tau is None or not math.isclose(fixed_tau, TRAINED_TAU):
        raise UserError(
            f"backend 'sdn' is trained for tau={TRAINED_TAU} only (a constant, not learnable); "
            f"got tau={tau!r} (use backend 'fused' or 'scan')"
        )
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.unsqueeze(-1)  # one value per neuron, broadcast along time
    scaled = x / threshold
    net = _shipped_sdn(x.device, x.dtype)
    potential = predict_potential(net, scaled.detach().reshape(-1, x.shape[-1])).reshape(x.shape)
    return spike(potential + scaled - 1.0, surrogate)


def spike_agreement(predicted: torch.Tensor, true: torch.Tensor) -> dict:
    """Per-step accuracy, precision, recall and whole-sequence accuracy of spike trains (N, L) in {0, 1}."""
    predicted, true = predicted.bool(), true.bool()
    hits = (predicted & true).sum().item()
    correct = predicted == true
    return {
        "accuracy": correct.float().mean().item(),
        "precision": hits / max(predicted.sum().item(), 1),
        "recall": hits / max(true.sum().item(), 1),
        "sequence_accuracy": correct.all(dim=-1).float().mean().item(),
        "spike_rate": true.float().mean().item(),
    }


def _random_inputs(n: int, length: int, seed: int) -> torch.Tensor:
    return torch.randn(n, length, generator=torch.Generator().manual_seed(seed))


def _score(potential: torch.Tensor, x: torch.Tensor, spikes: torch.Tensor, target: torch.Tensor) -> dict:
    """Metrics of a predicted m (N, L) against the LIF's spikes and true m, threshold 1."""
    return spike_agreement(potential + x >= 1.0, spikes) | {"mae": (potential - target).abs().mean().item()}


def evaluate_sdn(
    net: SDN, tau: float | None = None, n: int = 2000, length: int = 1024, seed: int = EVAL_SEED
) -> dict:
    """Spike agreement of `net` with the hard-reset LIF at `tau` (default: the net's own) on fresh N(0, 1).

    Returns accuracy (per step), precision, recall, sequence_accuracy (share of the n sequences with
    every step right), spike_rate (of the true LIF) and mae (of m_t). The seed must differ from the
    training seed (train_sdn draws its data from `seed` the same way).
    """
    tau = float(net.tau) if tau is None else tau
    x = _random_inputs(n, length, seed)
    spikes, target = lif_potential(x, tau)
    return _score(predict_potential(net, x), x, spikes, target)


def evaluate_baselines(
    tau: float = TRAINED_TAU, n: int = 2000, length: int = 1024, seed: int = EVAL_SEED
) -> dict:
    """The same metrics for two network-free guesses of m_t, to show what per-step accuracy is worth.

    "no_reset": the LIF without reset (m = tau · v_{t-1}, v never reset); "memoryless": m = 0, i.e.
    s_t = H(x_t - 1). Both measured here at tau 0.125: 99.1% and 98.3% per-step accuracy in the
    research notes (docs/BENCHMARKS.md has ours).
    """
    x = _random_inputs(n, length, seed)
    spikes, target = lif_potential(x, tau)
    _, no_reset = lif_potential(x, tau, threshold=math.inf)
    return {
        "no_reset": _score(no_reset, x, spikes, target),
        "memoryless": _score(torch.zeros_like(x), x, spikes, target),
    }


def train_sdn(
    out_path: str | os.PathLike,
    tau: float = TRAINED_TAU,
    samples: int = DEFAULT_SAMPLES,
    length: int = 1024,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    progress: bool = True,
    polish_iterations: int = DEFAULT_POLISH_ITERATIONS,
) -> dict:
    """Train an SDN to imitate the hard-reset LIF (threshold 1) at `tau`; save its state dict to out_path.

    Data: `samples` sequences x ~ N(0, 1) of `length` steps, targets m_t = tau · u_{t-1} from the loop
    LIF; 10% held out for validation. Phase 1, as the official code: AdamW (weight decay 0.01), cosine
    schedule to 0, SmoothL1 loss. Phase 2, ours: exact BatchNorm statistics, then `polish_iterations`
    of full-batch L-BFGS on the same loss for the network as it runs at inference (see `_polish`).
    Returns the settings and metrics: train_loss (last epoch), val_loss, val_accuracy / precision /
    recall / sequence_accuracy / spike_rate / mae after both phases, val_accuracy_adamw (after
    phase 1), params, seconds. Runs on one thread.
    """
    if samples < 10 or epochs < 1 or batch_size < 1 or length < 1 or polish_iterations < 0:
        raise UserError("train_sdn needs samples >= 10, epochs >= 1, batch_size >= 1, length >= 1, polish >= 0")
    # One thread: the tensors are tiny (batch x 8 x length), so more threads only add synchronization,
    # and on a busy machine their spin-waiting made steps ~100x slower (measured, 2 cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(Path(out_path), tau, samples, length, epochs, batch_size, lr, seed, progress, polish_iterations)
    finally:
        torch.set_num_threads(threads)


def _train(out_path: Path, tau, samples, length, epochs, batch_size, lr, seed, progress, polish_iterations) -> dict:
    start = time.perf_counter()
    x = _random_inputs(samples, length, seed)
    spikes, target = lif_potential(x, tau)
    n_val = samples // 10
    x_val, spikes_val, target_val = x[:n_val], spikes[:n_val], target[:n_val]
    x, target = x[n_val:], target[n_val:]
    loss_fn = nn.SmoothL1Loss()

    def validate(stage: str) -> dict:
        potential = predict_potential(net, x_val)
        val = _score(potential, x_val, spikes_val, target_val) | {"loss": loss_fn(potential, target_val).item()}
        if progress:
            print(
                f"sdn {stage}: val loss {val['loss']:.3g}, val accuracy {val['accuracy']:.5%}, "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        return val

    with torch.random.fork_rng():  # seed the initialization without touching the caller's RNG
        torch.manual_seed(seed)
        net = SDN(tau=tau)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * math.ceil(len(x) / batch_size))
    shuffle = torch.Generator().manual_seed(seed + 1)
    for epoch in range(epochs):
        net.train()
        total = 0.0
        for batch in torch.randperm(len(x), generator=shuffle).split(batch_size):
            loss = loss_fn(net(x[batch]), target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        train_loss = total / len(x)
        val_adamw = validate(f"epoch {epoch + 1}/{epochs} (train loss {train_loss:.3g})")

    polish_x, polish_target = x[:POLISH_SEQUENCES], target[:POLISH_SEQUENCES]
    _calibrate_batch_norm(net, polish_x)
    _polish(net, polish_x, polish_target, loss_fn, polish_iterations)
    val = validate(f"after {polish_iterations} L-BFGS iterations")

    save_tensors(net.state_dict(), out_path)
    return {
        "path": str(out_path),
        "tau": tau,
        "samples": samples,
        "length": length,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "polish_iterations": polish_iterations,
        "seed": seed,
        "params": sum(p.numel() for p in net.parameters()),
        "train_loss": train_loss,
        "val_loss": val["loss"],
        **{f"val_{key}": value for key, value in val.items() if key != "loss"},
        "val_accuracy_adamw": val_adamw["accuracy"],
        "seconds": time.perf_counter() - start,
    }


def _calibrate_batch_norm(net: SDN, x: torch.Tensor) -> None:
    """Set the BatchNorm running statistics to the exact mean and variance over inputs x (N, L).

    Training leaves them an exponential average over the last few small batches; their noise alone
    moved the inference output by about as much as the remaining error.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None = cumulative average: with one batch, that batch's statistics
    net.train()
    with torch.no_grad():
        net(x)
    for norm in norms:
        norm.momentum = 0.1
    net.eval()


def _polish(net: SDN, x: torch.Tensor, target: torch.Tensor, loss_fn, iterations: int) -> None:
    """Full-batch L-BFGS on the inference-mode network (BatchNorm as fixed affine maps).

    The spike error rate is about (density of v_t at the threshold) x (mean |error of m_t|), so the
    last digits of accuracy need a precise fit; with 193 parameters a quasi-Newton method on one large
    fixed batch gets there in a few hundred steps where noisy small-batch AdamW would take hours.
    """
    if iterations == 0:
        return
    net.eval()
    optimizer = torch.optim.LBFGS(
        net.parameters(), max_iter=iterations, history_size=50, line_search_fn="strong_wolfe",
        tolerance_grad=0.0, tolerance_change=0.0,
    )

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(net(x), target)
        loss.backward()
        return loss

    optimizer.step(closure)
