"""Operation counts and energy per sample, per layer.

Rules: the S4D recurrence and any linear map on real-valued input
are multiply-accumulates (MACs); a linear map on spikes costs one accumulate (AC) per nonzero input
per output; gates' elementwise products are MACs. Energies use SpikingSSMs' 45 nm figures
(Horowitz 2014, as quoted by Shen et al., AAAI 2025): E_MAC = 4.6 pJ, E_AC = 0.9 pJ. The
ANN-equivalent energy prices the same model with every operation a dense MAC.
Unlike SpikingSSMs, which counts only the feature-mixing layers, every layer is counted here; the
per-layer rows let a reader compare either way.
"""
from __future__ import annotations

from torch import nn

from spikessm.models.backbone import SequenceModel

E_MAC = 4.6e-12  # joules per multiply-accumulate
E_AC = 0.9e-12  # joules per accumulate


def _row(layer: str, mac: float, ac: float, ann_mac: float, rate: float | None = None,
         mixing: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dict:
    """``mixing``: the feature-mixing layer's (MACs, ACs, ANN MACs), the part SpikingSSMs counts."""
    mix_mac, mix_ac, mix_ann = mixing
    return {"layer": layer, "firing_rate": rate, "mac": mac, "ac": ac,
            "energy_j": mac * E_MAC + ac * E_AC, "ann_energy_j": ann_mac * E_MAC,
            "mixing_energy_j": mix_mac * E_MAC + mix_ac * E_AC, "mixing_ann_energy_j": mix_ann * E_MAC}


def layer_operations(model: SequenceModel, seq_len: int, rates: dict[str, float]) -> list[dict]:
    """One row per layer for one sample of ``seq_len`` steps; ``rates`` from a FiringRecorder.

    A retrieval sample is two documents through the same stack, so its stack costs count twice
    (twice one document's: attention's cost is not linear in the length).
    """
    L, copies, rows = seq_len, 2 if model.kind == "retrieval" else 1, []
    enc = model.encoder
    if isinstance(enc, nn.Linear):  # an embedding is a table look-up: no arithmetic
        mac = copies * L * enc.in_features * enc.out_features
        rows.append(_row("encoder", mac, 0.0, mac))
    for op in model.stack_operations(L, rates):
        rows.append(_row(op["layer"], copies * op["mac"], copies * op["ac"], copies * op["ann_mac"], op["rate"],
                         tuple(copies * n for n in op["mixing"])))
    # Every linear map of the decoder. An adaptive softmax's are its head (H x (cutoffs[0] + clusters))
    # and each tail cluster's two projections: together the whole next-token distribution, which
    # is what the plain decoder's count means too. (Scoring a known target costs less: the head
    # and the target's cluster only.)
    dec_mac = sum(m.in_features * m.out_features for m in model.decoder.modules()
                  if isinstance(m, nn.Linear))
    dec_mac *= L if model.kind == "lm" else 1  # retrieval: one decoder for the pair
    rows.append(_row("decoder", dec_mac, 0.0, dec_mac))
    return rows


def energy_summary(rows: list[dict]) -> dict:
    """Totals over the layer rows: the contract's ``energy`` field of summary.json, plus the
    feature-mixing part alone (``mixing_*``), which is what SpikingSSMs reports."""
    keys = ("mac", "ac", "energy_j", "ann_energy_j", "mixing_energy_j", "mixing_ann_energy_j")
    return {key: sum(r[key] for r in rows) for key in keys}
