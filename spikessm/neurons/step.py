"""One LIF time step, the arithmetic every backend reproduces: a leaf module (it imports only the
spike function), so that the backends (scan, sdn) and the dispatcher (lif.py) all import it without
importing each other."""
from __future__ import annotations

import torch

from spikessm.errors import check_choice
from spikessm.neurons.surrogates import spike

RESETS = ("hard", "soft")


def lif_step(x_t: torch.Tensor, u: torch.Tensor, tau: float | torch.Tensor = 0.125,
             threshold: float | torch.Tensor = 1.0, reset: str = "hard",
             surrogate: str = "triangle") -> tuple[torch.Tensor, torch.Tensor]:
    """Advance LIF neurons by one time step; `loop` is this applied along time, so streaming matches it.

    x_t: input current (...,); u: membrane after the previous step's reset (...,), zeros at the start.
    tau, threshold: floats or tensors broadcastable to x_t. Returns (s_t, u_t), each shaped like x_t.
    """
    check_choice("reset", reset, RESETS)
    v = tau * u + x_t
    s = spike(v - threshold, surrogate)
    reset_by = s.detach()
    u = v * (1 - reset_by) if reset == "hard" else v - threshold * reset_by
    return s, u
