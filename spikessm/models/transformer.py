"""The Transformer baseline of Long Range Arena (Tay et al. 2021, arXiv 2011.04006), on the shared heads.

    h_0 = encoder(x) + P                        P: sinusoidal (Vaswani et al. 2017) or learned positions
    h_l = TransformerEncoderLayer(h_{l-1})      torch.nn's: self-attention + feed-forward, each residual,
                                                LayerNorm before (prenorm, as LRA) or after each part
    features = LayerNorm(h_n) (prenorm) or h_n

The encoder (embedding or linear), pooling (mean or last valid step) and decoders are
:class:`~spikessm.models.backbone.SequenceModel`'s, the same as every other model's. Attention ignores
padding (a key-padding mask from the lengths); ``bidirectional=False`` adds the causal mask (required
for ``lm``): position t attends to positions <= t only.

Streaming is by recomputation: the state is the prefix seen so far, and each step runs the whole
prefix again (step t costs O(t^2 H) for attention; a KV cache would make it O(t H) but needs
attention written out by hand instead of torch's layer). After the last step the output equals the
parallel pass, as for every model.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from spikessm.errors import UserError, check_choice
from spikessm.models.backbone import SequenceModel

POSITIONS = ("sinusoidal", "learned")
FF_ACTIVATIONS = ("gelu", "relu")
OPTIONS = {"n_heads": 4, "d_ff": 0, "positions": "sinusoidal", "max_len": 0, "ff_activation": "gelu"}
CHOICES = {"positions": POSITIONS, "ff_activation": FF_ACTIVATIONS}


def sinusoidal_positions(L: int, d_model: int, like: torch.Tensor) -> torch.Tensor:
    """``(L, d_model)``: P[t, 2i] = sin(t / 10000^(2i/d)), P[t, 2i+1] = cos(t / 10000^(2i/d))."""
    t = torch.arange(L, dtype=torch.float64, device=like.device).unsqueeze(1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64, device=like.device)
                     / d_model)
    P = torch.zeros(L, d_model, dtype=torch.float64, device=like.device)
    P[:, 0::2] = torch.sin(t * freq)
    P[:, 1::2] = torch.cos(t * freq)[:, :d_model // 2]
    return P.to(like.dtype)


class TransformerModel(SequenceModel):
    """A Transformer encoder stack with the shared encoder, pooling and decoders.

    ``block_options``: ``n_heads`` (must divide d_model), ``d_ff`` (feed-forward width; 0: 4 d_model),
    ``positions`` (sinusoidal, or learned for up to ``max_len`` steps), ``ff_activation`` (gelu, relu).
    Backbone options as :class:`SequenceModel` (``norm`` is not used: torch's layers bring their own
    LayerNorms; ``prenorm`` puts them before each part, as LRA does). ``dropout`` is torch's (attention
    weights, feed-forward and both residual branches).
    """

    def __init__(self, block_options: dict[str, Any], *, bidirectional: bool, d_model: int = 64,
                 prenorm: bool = False, dropout: float = 0.0, **backbone: Any):
        own = {**OPTIONS, **block_options}
        for key, valid in CHOICES.items():
            check_choice(f"model.{key}", own[key], valid)
        n_heads, d_ff, max_len = own["n_heads"], own["d_ff"] or 4 * d_model, own["max_len"]
        if not isinstance(n_heads, int) or n_heads < 1 or d_model % n_heads:
            raise UserError(f"model.n_heads={n_heads!r} must be a positive integer dividing model.d_model={d_model}")
        if not isinstance(d_ff, int) or d_ff < 1:
            raise UserError(f"model.d_ff={own['d_ff']!r} must be a positive integer (0: 4 x d_model)")
        if own["positions"] == "learned" and (not isinstance(max_len, int) or max_len < 1):
            raise UserError("model.positions=learned needs model.max_len, the longest sequence (a positive integer)")
        backbone["norm"] = "none"  # the encoder layers hold their own LayerNorms

        def layer(d: int) -> nn.Module:
            return nn.TransformerEncoderLayer(d, n_heads, d_ff, dropout, activation=own["ff_activation"],
                                              batch_first=True, norm_first=prenorm)

        super().__init__(layer, d_model=d_model, prenorm=prenorm, dropout=dropout, **backbone)
        if self.kind == "lm" and bidirectional:
            raise UserError("language modelling needs causal attention: set model.bidirectional=false")
        self.causal, self.n_heads, self.d_ff = not bidirectional, n_heads, d_ff
        self.positions = nn.Parameter(torch.randn(max_len, d_model) * 0.02) if own["positions"] == "learned" else None
        self.final_norm = nn.LayerNorm(d_model) if prenorm else nn.Identity()

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, d_input)`` or ids ``(B, L)`` -> ``(B, H, L)``; padding beyond ``lengths`` is never attended to."""
        h = self.encoder(x)
        L = h.shape[1]
        if self.positions is None:
            h = h + sinusoidal_positions(L, self.d_model, h)
        elif L > len(self.positions):
            raise UserError(f"a sequence of {L} steps is longer than the learned positions (model.max_len="
                            f"{len(self.positions)})")
        else:
            h = h + self.positions[:L]
        mask = torch.ones(L, L, dtype=torch.bool, device=h.device).triu(1) if self.causal else None
        padding = None
        if lengths is not None:
            padding = torch.arange(L, device=h.device) >= lengths.to(h.device).unsqueeze(-1)  # True: ignore
        for layer in self.blocks:
            h = layer(h, src_mask=mask, src_key_padding_mask=padding)
        return self.final_norm(h).transpose(1, 2)

    def stack_operations(self, L: int, rates: dict[str, float]) -> list[dict]:
        """Dense MACs per layer and sequence: the Q, K, V and output projections (4 L H^2), the scores
        Q K^T and their weighted sum of V (2 H per attended pair: L^2 pairs, L (L+1)/2 with the causal
        mask), the feed-forward (2 L H d_ff) and two LayerNorms' affine maps (2 L H). Softmax and the
        activation's cost are not counted (as GELU's is not for the ANN)."""
        H, pairs = self.d_model, L * (L + 1) / 2 if self.causal else L * L
        mac = 4 * L * H * H + 2 * pairs * H + 2 * L * H * self.d_ff + 2 * L * H
        return [{"layer": f"blocks.{i}", "mac": mac, "ac": 0.0, "ann_mac": mac, "rate": None,
                 "mixing": (0.0, 0.0, 0.0)} for i in range(len(self.blocks))]

    # ---- streaming by recomputation

    def initial_state(self, batch: int) -> dict:
        self._require_streamable()
        return {"prefix": None, "steps": 0}

    @torch.no_grad()
    def step(self, x_t: torch.Tensor, state: dict):
        """One step: x_t ``(B, d_input)`` or ids ``(B,)`` -> (output, state), as
        :meth:`SequenceModel.step`; runs the whole prefix again (see the module's docstring)."""
        x_t = x_t.unsqueeze(1)
        prefix = x_t if state["prefix"] is None else torch.cat([state["prefix"], x_t], dim=1)
        state = {"prefix": prefix, "steps": state["steps"] + 1}
        if self.kind == "lm":
            return self.scores(self.features(prefix)[..., -1]), state
        return self.decoder(self.pooled(self.features(prefix), None)), state
