"""Operation counts on a tiny model whose spikes are known by construction."""
import pytest
import torch

from spikessm.data.registry import Splits
from spikessm.metrics.energy import E_AC, E_MAC, energy_summary, layer_operations
from spikessm.metrics.firing import FiringRecorder
from spikessm.models import build_model, model_defaults


def test_hand_computed_counts():
    # 1 input feature, H = 2 channels, N = 2 (one complex mode), 3 classes, L = 3 steps, no norm.
    opts = {**model_defaults("spikingssm"), "d_model": 2, "n_layers": 1, "d_state": 2, "norm": "none"}
    model = build_model(opts, Splits(None, None, None, n_classes=3, d_input=1), "classify").eval()
    with torch.no_grad():
        model.encoder.weight.fill_(1.0)
        model.encoder.bias.zero_()
        block = model.blocks[0]
        block.ssm.kernel.C.zero_()  # y = D u only
        block.ssm.D.copy_(torch.tensor([5.0, -5.0]))  # channel 0 always fires, channel 1 never
    x = torch.ones(1, 3, 1)
    with FiringRecorder(model) as rec:
        model(x)
    assert rec.rates() == {"blocks.0.activation": 0.5}

    rows = {r["layer"]: r for r in layer_operations(model, 3, rec.rates())}
    # encoder: L * d_in * H = 3 * 1 * 2
    assert rows["encoder"]["mac"] == 6 and rows["encoder"]["ac"] == 0
    # block: SSM L*H*(6 per mode * 1 mode + 1 for D) = 42; membrane L*H = 6; GLU gate L*H = 6
    # GLU on spikes: 3 spikes (channel 0 at each step) x 2H = 4 outputs = 12 ACs
    assert rows["blocks.0"]["mac"] == 42 + 6 + 6
    assert rows["blocks.0"]["ac"] == 12
    # the ANN equivalent prices the GLU densely: L*H*2H = 24 MACs instead of 12 ACs
    assert rows["blocks.0"]["ann_energy_j"] == pytest.approx((42 + 6 + 6 + 24) * E_MAC)
    assert rows["blocks.0"]["energy_j"] == pytest.approx(54 * E_MAC + 12 * E_AC)
    # decoder: H * classes, once per sequence
    assert rows["decoder"]["mac"] == 6
    total = energy_summary(list(rows.values()))
    assert total["mac"] == 6 + 54 + 6 and total["ac"] == 12
    assert total["energy_j"] == pytest.approx(66 * 4.6e-12 + 12 * 0.9e-12)
    assert total["ann_energy_j"] == pytest.approx((66 + 24) * 4.6e-12)
    # SpikingSSMs' convention counts the feature mixing only: the GLU's 6 MACs and 12 ACs
    assert total["mixing_energy_j"] == pytest.approx(6 * E_MAC + 12 * E_AC)
    assert total["mixing_ann_energy_j"] == pytest.approx((6 + 24) * E_MAC)


def test_ann_model_energy_equals_its_ann_equivalent():
    opts = {**model_defaults("s4d"), "d_model": 4, "n_layers": 2, "d_state": 4}
    model = build_model(opts, Splits(None, None, None, n_classes=2, d_input=3), "classify")
    total = energy_summary(layer_operations(model, 10, {}))
    assert total["ac"] == 0 and total["energy_j"] == pytest.approx(total["ann_energy_j"])
    # per block: batch norm 40 + SSM 10*4*(6*2+1) = 520 + GLU 10*4*8 + 40 = 360
    assert total["mac"] == 10 * 3 * 4 + 2 * (40 + 520 + 360) + 4 * 2
