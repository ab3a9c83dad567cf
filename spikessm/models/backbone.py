"""The sequence model around the blocks: encoder -> residual stack -> pooling -> decoder.

One class for every task kind:

- classify:  (B, L, d_input) floats or (B, L) ids -> logits (B, classes), pooled over valid steps
- retrieval: (B, 2, L) ids -> both documents encoded by the same stack, pooled to a and b, then
  MLP([a, b, a*b, a-b]) -> logits (B, classes) (the two-tower head of LRA and S4)
- lm:        (B, L) ids -> next-token logits (B, L, vocab); causal blocks only
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spikessm.errors import UserError

NORMS = ("batch", "layer", "none")
POOLS = ("mean", "last")


class Norm(nn.Module):
    """Batch or layer norm over the channel axis of ``(B, H, L)`` (or ``(B, H)`` when streaming)."""

    def __init__(self, kind: str, d_model: int):
        super().__init__()
        if kind not in NORMS:
            raise UserError(f"unknown norm {kind!r}; choose one of: {', '.join(NORMS)}")
        self.kind = kind
        self.norm = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "none": nn.Identity}[kind](d_model)

    def forward(self, x):
        if self.kind == "layer" and x.dim() == 3:
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


class SequenceModel(nn.Module):
    """A stack of ``n_layers`` residual blocks built by ``make_block(d_model)``.

    Each layer is ``x + dropout(block(norm(x)))`` (prenorm) or ``norm(x + dropout(block(x)))``
    (postnorm; the norm is really applied, unlike the SpikingSSMs reference code, which computes it
    and drops the result).
    """

    def __init__(self, make_block: Callable[[int], nn.Module], *, kind: str, n_classes: int,
                 d_model: int = 64, n_layers: int = 4, d_input: int | None = None,
                 vocab_size: int | None = None, norm: str = "batch", prenorm: bool = False,
                 dropout: float = 0.0, pool: str = "mean"):
        super().__init__()
        if (d_input is None) == (vocab_size is None):
            raise ValueError("give exactly one of d_input (real-valued input) and vocab_size (token ids)")
        if pool not in POOLS:
            raise UserError(f"unknown pool {pool!r}; choose one of: {', '.join(POOLS)}")
        self.kind, self.pool, self.prenorm = kind, pool, prenorm
        self.encoder = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(make_block(d_model) for _ in range(n_layers))
        self.norms = nn.ModuleList(Norm(norm, d_model) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        if kind == "retrieval":
            self.decoder = nn.Sequential(nn.Linear(4 * d_model, d_model), nn.GELU(),
                                         nn.Linear(d_model, n_classes))
        else:
            self.decoder = nn.Linear(d_model, n_classes)
        if kind == "lm" and any(getattr(b.ssm, "bidirectional", False) for b in self.blocks):
            raise UserError("language modelling needs causal blocks: set model.bidirectional=false")

    def _residual(self, x, i, block_out):
        return x + self.dropout(block_out) if self.prenorm else self.norms[i](x + self.dropout(block_out))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoded and mixed features ``(B, H, L)`` of input ``(B, L, d_input)`` or ids ``(B, L)``."""
        x = self.encoder(x).transpose(1, 2)
        for i, block in enumerate(self.blocks):
            x = self._residual(x, i, block(self.norms[i](x) if self.prenorm else x))
        return x

    def pooled(self, feats: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """``(B, H, L)`` -> ``(B, H)``, over the first ``lengths`` steps of each sequence."""
        L = feats.shape[-1]
        if lengths is None:
            lengths = torch.full((feats.shape[0],), L, device=feats.device)
        lengths = lengths.to(feats.device)
        if self.pool == "last":
            return feats.gather(-1, (lengths - 1).view(-1, 1, 1).expand(-1, feats.shape[1], 1)).squeeze(-1)
        mask = (torch.arange(L, device=feats.device) < lengths.unsqueeze(-1)).to(feats.dtype)
        return (feats * mask.unsqueeze(1)).sum(-1) / lengths.unsqueeze(-1).to(feats.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "lm":
            return self.decoder(self.features(x).transpose(1, 2))
        if self.kind == "retrieval":
            B = x.shape[0]
            both = self.pooled(self.features(x.flatten(0, 1)),
                               None if lengths is None else lengths.flatten())
            a, b = both.view(B, 2, -1).unbind(1)
            return self.decoder(torch.cat([a, b, a * b, a - b], dim=-1))
        return self.decoder(self.pooled(self.features(x), lengths))

    # ---- streaming: one time step at a time, as neuromorphic hardware would run it ----

    def initial_state(self, batch: int) -> dict:
        if self.kind == "retrieval":
            raise UserError("streaming is for classification and language modelling, not retrieval")
        like = self.decoder.weight
        return {"blocks": [b.initial_state(batch, like) for b in self.blocks],
                # the discretised SSM parameters, computed once for the whole stream
                "discrete": [b.ssm.kernel.discrete() for b in self.blocks],
                "sum": torch.zeros(batch, self.decoder.in_features, dtype=like.dtype, device=like.device),
                "steps": 0}

    @torch.no_grad()
    def step(self, x_t: torch.Tensor, state: dict):
        """One step: x_t ``(B, d_input)`` or ids ``(B,)`` -> (output ``(B, classes)``, state).

        For classification the output is the decoder applied to the pooled features so far; after
        the last step it equals :meth:`forward` on the whole sequence. Call in eval mode.
        """
        x = self.encoder(x_t)
        states = []
        for i, (block, s, d) in enumerate(zip(self.blocks, state["blocks"], state["discrete"])):
            out, s = block.step(self.norms[i](x) if self.prenorm else x, s, d)
            x = self._residual(x, i, out)
            states.append(s)
        steps = state["steps"] + 1
        total = state["sum"] + x
        pooled = x if self.kind == "lm" or self.pool == "last" else total / steps
        return self.decoder(pooled), {**state, "blocks": states, "sum": total, "steps": steps}
