"""The sequence model around the blocks: encoder -> residual stack -> pooling -> decoder.

One class for every task kind:

- classify:  (B, L, d_input) floats or (B, L) ids -> logits (B, classes), pooled over valid steps
- retrieval: (B, 2, L) ids -> both documents encoded by the same stack, pooled to a and b, then
  MLP([a, b, a*b, a-b]) -> logits (B, classes) (the two-tower head of LRA and S4)
- lm:        (B, L) ids -> next-token scores (B, L, vocab); causal blocks only. The decoder is a
  linear map to logits, or with ``adaptive_cutoffs`` torch's adaptive softmax (Grave et al. 2017,
  "Efficient softmax approximation for GPUs"), whose scores are log-probabilities. Training asks
  for the targets' log-likelihoods instead (``forward(x, lengths, targets)``), which the adaptive
  softmax computes without building the whole (B, L, vocab) distribution.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from spikessm.blocks.lean_ops import Dropout
from spikessm.errors import UserError, check_choice
from spikessm.models.serialization import write_pretrained

NORMS = ("batch", "layer", "none")
POOLS = ("mean", "last")


def cutoffs_problem(cutoffs, vocab_size: int | None = None) -> str | None:
    """Why ``cutoffs`` cannot split ``vocab_size`` token ids into adaptive-softmax clusters, or None.

    The head predicts ids ``[0, cutoffs[0])`` and one entry per cluster; cluster i holds ids
    ``[cutoffs[i], cutoffs[i+1])``, the last one up to the vocabulary's end.
    """
    if not isinstance(cutoffs, (list, tuple)) or not all(isinstance(c, int) and not isinstance(c, bool)
                                                         for c in cutoffs):
        return "must be a list of integers, e.g. [20000, 40000, 200000]"
    if any(c <= 0 for c in cutoffs):
        return "must all be > 0"
    if any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
        return "must be strictly increasing"
    if vocab_size is not None and cutoffs and cutoffs[-1] >= vocab_size:
        return f"must all be < the vocabulary size ({vocab_size})"
    return None


class Norm(nn.Module):
    """Batch or layer norm over the channel axis of ``(B, H, L)`` (or ``(B, H)`` when streaming)."""

    def __init__(self, kind: str, d_model: int):
        super().__init__()
        check_choice("model.norm", kind, NORMS)
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

    ``adaptive_cutoffs`` (language modelling only; None or empty: a plain linear decoder) makes the
    decoder ``nn.AdaptiveLogSoftmaxWithLoss(d_model, vocab, cutoffs, div_value)``: tail cluster i
    projects to ``d_model // div_value**(i+1)`` features first. No biases (torch's default, as in
    fairseq). It assumes ids ordered by decreasing frequency, as wikitext103's vocabulary is.
    """

    def __init__(self, make_block: Callable[[int], nn.Module], *, kind: str, n_classes: int,
                 d_model: int = 64, n_layers: int = 4, d_input: int | None = None,
                 vocab_size: int | None = None, norm: str = "batch", prenorm: bool = False,
                 dropout: float = 0.0, pool: str = "mean", adaptive_cutoffs: list[int] | None = None,
                 adaptive_div_value: float = 4.0):
        super().__init__()
        if (d_input is None) == (vocab_size is None):
            raise ValueError("give exactly one of d_input (real-valued input) and vocab_size (token ids)")
        check_choice("model.pool", pool, POOLS)
        self.config = None  # the ModelConfig it was built from (ModelConfig.build sets it)
        self.kind, self.pool, self.prenorm, self.d_model = kind, pool, prenorm, d_model
        self.adaptive_softmax = bool(adaptive_cutoffs)
        self.encoder = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList(make_block(d_model) for _ in range(n_layers))
        self.norms = nn.ModuleList(Norm(norm, d_model) for _ in range(n_layers))
        self.dropout = Dropout(dropout)
        if kind == "retrieval":
            self.decoder = nn.Sequential(nn.Linear(4 * d_model, d_model), nn.GELU(),
                                         nn.Linear(d_model, n_classes))
        elif self.adaptive_softmax:
            if kind != "lm":
                raise UserError(f"model.adaptive_softmax_cutoffs is for language modelling; this task is {kind}")
            problem = cutoffs_problem(adaptive_cutoffs, n_classes)
            if problem:
                raise UserError(f"model.adaptive_softmax_cutoffs={adaptive_cutoffs!r} {problem}")
            if not adaptive_div_value > 0:
                raise UserError(f"model.adaptive_softmax_div_value={adaptive_div_value!r} must be > 0")
            n = len(adaptive_cutoffs)
            if int(d_model // adaptive_div_value ** n) < 1:  # the last cluster's width, as torch computes it
                raise UserError(f"model.adaptive_softmax_div_value={adaptive_div_value!r} leaves the last of {n} "
                                f"clusters no features (d_model {d_model} // {adaptive_div_value}^{n}); lower it, "
                                "use fewer cut-offs or a larger model.d_model")
            self.decoder = nn.AdaptiveLogSoftmaxWithLoss(d_model, n_classes, list(adaptive_cutoffs),
                                                         div_value=adaptive_div_value)
        else:
            self.decoder = nn.Linear(d_model, n_classes)
        if kind == "lm" and any(getattr(getattr(b, "ssm", None), "bidirectional", False) for b in self.blocks):
            raise UserError("language modelling needs causal blocks: set model.bidirectional=false")

    def save_pretrained(self, directory: str | Path, **info: Any) -> Path:
        """Write ``directory/config.json`` (the :class:`~spikessm.models.config.ModelConfig` and
        ``info``, JSON-able) and ``directory/model.safetensors`` (the weights); load it back with
        :func:`spikessm.from_pretrained`."""
        if self.config is None:
            raise UserError("this model was built without a ModelConfig; build it with ModelConfig(...).build() "
                            "to save it")
        return write_pretrained(directory, {"model": self.config.to_dict(), **info}, self.state_dict())

    def _residual(self, x, i, block_out):
        return x + self.dropout(block_out) if self.prenorm else self.norms[i](x + self.dropout(block_out))

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Encoded and mixed features ``(B, H, L)`` of input ``(B, L, d_input)`` or ids ``(B, L)``.
        ``lengths`` ``(B,)``: valid steps (the S4D blocks do not need them; attention does)."""
        x = self.encoder(x).transpose(1, 2)
        for i, block in enumerate(self.blocks):
            x = self._residual(x, i, block(self.norms[i](x) if self.prenorm else x))
        return x

    def stack_operations(self, L: int, rates: dict[str, float]) -> list[dict]:
        """Per layer, the operations of one sequence of ``L`` steps (rules in :mod:`spikessm.metrics.energy`):
        ``layer``, ``mac``, ``ac``, ``ann_mac`` (every operation a dense MAC), the layer's firing ``rate``
        and ``mixing`` = the feature-mixing part's (MACs, ACs, ANN MACs). ``rates``: a FiringRecorder's."""
        ops = []
        for i, (block, norm) in enumerate(zip(self.blocks, self.norms)):
            H = block.d_model
            norm_mac = 0 if norm.kind == "none" else L * H  # affine in eval (folded statistics)
            ssm_mac = block.ssm.macs(L)
            act = block.activation
            neuron_mac = L * H * act.macs_per_step
            rate = rates.get(f"blocks.{i}.activation") if act.spiking else None
            prefix = f"blocks.{i}.mixing."
            own = {k[len(prefix):]: v for k, v in rates.items() if k.startswith(prefix)}
            mix_mac, mix_ac = block.mixing.operations(L, rate, own)
            ann_mix, _ = block.mixing.operations(L, None, {})
            fixed = norm_mac + ssm_mac + neuron_mac
            ops.append({"layer": f"blocks.{i}", "mac": fixed + mix_mac, "ac": mix_ac, "ann_mac": fixed + ann_mix,
                        "rate": rate, "mixing": (mix_mac, mix_ac, ann_mix)})
        return ops

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

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token scores ``(..., vocab)`` of features ``(..., H)``: logits, or log-probabilities
        with the adaptive softmax (either way, their softmax is the predicted distribution)."""
        if not self.adaptive_softmax:
            return self.decoder(h)
        with self._no_autocast(h):
            return self.decoder.log_prob(self._as_decoder(h.reshape(-1, h.shape[-1]))).view(*h.shape[:-1], -1)

    @staticmethod
    def _no_autocast(h: torch.Tensor):
        """Torch's adaptive softmax mixes dtypes under autocast on the CPU (its index_copy_ then
        fails), so it runs in the weights' precision."""
        return torch.autocast(h.device.type, enabled=False)

    ADAPTIVE_CHUNK = 4096  # positions per piece of the adaptive softmax in training

    def _adaptive_nll(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each target's NLL ``(N,)`` and the predicted ids ``(N,)`` under the adaptive softmax, for features
        ``(N, H)`` and targets ``(N,)``, ``ADAPTIVE_CHUNK`` positions at a time, each piece recomputed in the
        backward pass: its scores (positions x head size, and a cluster's rows x cluster size) would
        otherwise be kept for every position at once, GBs at 16K positions and a 20K-token head."""
        nll, predicted = [], []
        for i in range(0, max(len(h), 1), self.ADAPTIVE_CHUNK):
            piece, target = h[i:i + self.ADAPTIVE_CHUNK], y[i:i + self.ADAPTIVE_CHUNK]
            nll.append(checkpoint(lambda a, b: -self.decoder(a, b).output, piece, target, use_reentrant=False))
            with torch.no_grad():  # exact: a head winner is never beaten by a cluster's token
                predicted.append(self.decoder.predict(piece))
        return torch.cat(nll), torch.cat(predicted)

    def _as_decoder(self, h: torch.Tensor) -> torch.Tensor:
        return h.to(self.decoder.head.weight.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                targets: torch.Tensor | None = None):
        """Logits ``(B, classes)``; for ``lm`` the scores ``(B, L, vocab)`` (see :meth:`scores`).

        ``lm`` with ``targets`` ``(B, L)`` (the next ids) returns ``(nll, correct)`` instead, both
        ``(N,)`` over the N positions within ``lengths`` in row-major order: each target's negative
        log-likelihood (not bfloat16, also under autocast) and whether it was the most likely token.
        Padding never reaches the decoder. Training calls this form, so that the loss is computed
        inside ``forward`` (as DistributedDataParallel needs).
        """
        if self.kind == "lm":
            feats = self.features(x, lengths).transpose(1, 2)  # (B, L, H)
            if targets is None:
                return self.scores(feats)
            L = targets.shape[1]
            if lengths is None:
                lengths = torch.full((targets.shape[0],), L)
            mask = torch.arange(L, device=targets.device) < lengths.to(targets.device).unsqueeze(-1)
            h, y = feats[mask], targets[mask]
            if self.adaptive_softmax:
                with self._no_autocast(h):
                    nll, predicted = self._adaptive_nll(self._as_decoder(h), y)
            else:
                logits = self.decoder(h)
                nll = F.cross_entropy(logits, y, reduction="none")  # float32 under autocast too
                predicted = logits.argmax(-1)
            return nll, predicted == y
        if self.kind == "retrieval":
            B = x.shape[0]
            lengths = None if lengths is None else lengths.flatten()
            both = self.pooled(self.features(x.flatten(0, 1), lengths), lengths)
            a, b = both.view(B, 2, -1).unbind(1)
            return self.decoder(torch.cat([a, b, a * b, a - b], dim=-1))
        return self.decoder(self.pooled(self.features(x, lengths), lengths))

    # ---- streaming: one time step at a time, as neuromorphic hardware would run it ----

    def _require_streamable(self) -> None:
        if self.kind == "retrieval":
            raise UserError("streaming is for classification and language modelling, not retrieval")

    def initial_state(self, batch: int) -> dict:
        self._require_streamable()
        like = self.encoder.weight  # dtype and device of the model
        return {"blocks": [b.initial_state(batch, like) for b in self.blocks],
                # the discretised SSM parameters, computed once for the whole stream
                "discrete": [b.ssm.kernel.discrete() for b in self.blocks],
                "sum": torch.zeros(batch, self.d_model, dtype=like.dtype, device=like.device),
                "steps": 0}

    @torch.no_grad()
    def step(self, x_t: torch.Tensor, state: dict):
        """One step: x_t ``(B, d_input)`` or ids ``(B,)`` -> (output ``(B, classes)``, state).

        For classification the output is the decoder applied to the pooled features so far; after
        the last step it equals :meth:`forward` on the whole sequence. For ``lm`` it is the next
        token's scores (:meth:`scores`), equal to ``forward(x)[:, t]``. Call in eval mode.
        """
        x = self.encoder(x_t)
        states = []
        for i, (block, s, d) in enumerate(zip(self.blocks, state["blocks"], state["discrete"])):
            out, s = block.step(self.norms[i](x) if self.prenorm else x, s, d)
            x = self._residual(x, i, out)
            states.append(s)
        return self._emit(x, {**state, "blocks": states})

    def _emit(self, h: torch.Tensor, state: dict):
        """The output of a step whose features are ``h`` ``(B, H)``, and ``state`` with the running sum
        of the features (for mean pooling) advanced by it."""
        state = {**state, "sum": state["sum"] + h, "steps": state["steps"] + 1}
        if self.kind == "lm":
            return self.scores(h), state
        return self.decoder(h if self.pool == "last" else state["sum"] / state["steps"]), state
