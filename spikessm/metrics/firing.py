"""Firing rates, recorded by forward hooks on every spiking layer of a model."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's spiking layers by module name, in forward order: every module whose class says
    ``spiking = True`` (spiking activations, a GSU's ternary branch, recurrent spiking layers), whose
    output is its spikes."""
    return {name: m for name, m in model.named_modules() if getattr(m, "spiking", False) is True}


class FiringRecorder:
    """Context manager accumulating, per spiking layer, the mean of its spikes.

    Firing rate = spikes / (batch x time x channels) (SpikingSSMs' definition: spikes per time step
    per neuron, averaged over neurons). Ternary {-1, 0, 1} outputs count their nonzeros.
    """

    def __init__(self, model: nn.Module):
        self.layers = spiking_layers(model)
        self.spikes = {name: 0.0 for name in self.layers}
        self.counts = {name: 0 for name in self.layers}
        self._handles = []

    def _hook(self, name):
        def record(module, inputs, output):
            self.spikes[name] += output.detach().ne(0).sum().item()
            self.counts[name] += output.numel()
        return record

    def __enter__(self):
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()

    def sum_across_processes(self, device: torch.device | str = "cpu") -> None:
        """In a multi-process run (torch.distributed initialised), replace this process's counts by
        the sums over all processes, so that :meth:`rates` covers every process's spikes. Every
        process must call it. A no-op in a single process."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1) or not self.layers:
            return
        names = list(self.layers)
        totals = torch.tensor([*(self.spikes[n] for n in names), *(self.counts[n] for n in names)],
                              dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        values = totals.tolist()
        self.spikes = dict(zip(names, values[:len(names)]))
        self.counts = dict(zip(names, values[len(names):]))

    def rates(self) -> dict[str, float]:
        return {n: self.spikes[n] / self.counts[n] for n in self.layers if self.counts[n]}

    def mean_rate(self) -> float | None:
        rates = self.rates()
        return sum(rates.values()) / len(rates) if rates else None
