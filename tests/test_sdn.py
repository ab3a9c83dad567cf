"""SDN backend: causality, the shipped weights against the loop LIF, its limits, gradient, threshold scaling."""

import pytest
import torch

from spikessm.errors import UserError
from spikessm.neurons import lif
from spikessm.neurons.sdn import (
    SDN,
    WEIGHTS,
    evaluate_sdn,
    lif_potential,
    load_sdn,
    predict_potential,
    sdn_lif,
    train_sdn,
)


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lif_potential_reproduces_the_loop_backend(dtype):
    x = _randn(8, 300, dtype=dtype)
    spikes, potential = lif_potential(x, 0.125)
    assert torch.equal(spikes, lif(x, tau=0.125, backend="loop"))
    assert torch.equal((potential + x >= 1.0).to(dtype), spikes)


@pytest.mark.parametrize("shipped", [False, True], ids=["random", "shipped"])
def test_prediction_is_strictly_causal_with_an_8_step_window(shipped):
    net = load_sdn() if shipped else SDN()
    x = _randn(3, 64)
    t = 20
    changed = x.clone()
    changed[:, t] += 5.0
    before, after = predict_potential(net, x), predict_potential(net, changed)
    assert torch.equal(before[:, : t + 1], after[:, : t + 1])  # m_t = tau u_{t-1} must not see x_t
    assert torch.equal(before[:, t + 9 :], after[:, t + 9 :])  # receptive field x_{t-8..t-1}
    assert not torch.equal(before[:, t + 1], after[:, t + 1])


def test_shipped_weights_are_a_plain_state_dict_and_match_the_loop_lif():
    state = torch.load(WEIGHTS, weights_only=True)
    assert float(state["tau"]) == 0.125
    net = load_sdn()
    assert sum(p.numel() for p in net.parameters()) == 193
    metrics = evaluate_sdn(net, n=200, length=1024, seed=20250101)
    assert metrics["accuracy"] >= 0.999
    assert metrics["precision"] >= 0.99 and metrics["recall"] >= 0.99


def test_lif_backend_sdn_matches_loop_on_a_model_shaped_tensor():
    x = _randn(4, 16, 512, seed=3)
    agree = lif(x, backend="sdn") == lif(x, backend="loop")
    assert agree.float().mean() >= 0.999


@pytest.mark.parametrize(
    "kwargs",
    [dict(tau=0.2), dict(reset="soft"), dict(tau=torch.full((4,), 0.125, requires_grad=True))],
    ids=["tau 0.2", "soft reset", "learnable tau"],
)
def test_sdn_refuses_what_it_was_not_trained_for(kwargs):
    x = _randn(4, 32)
    with pytest.raises(UserError):
        sdn_lif(x, **kwargs)
    with pytest.raises(UserError):
        lif(x, backend="sdn", **kwargs)


def test_sdn_accepts_a_constant_tau_tensor():
    x = _randn(4, 32)
    assert torch.equal(sdn_lif(x, tau=torch.full((4,), 0.125)), sdn_lif(x))


def test_gradient_is_the_surrogate_at_the_current_input():
    x = _randn(2, 5, 128).requires_grad_()
    threshold = torch.full((5,), 1.5, requires_grad=True)
    spikes = sdn_lif(x, threshold=threshold)
    spikes.sum().backward()
    with torch.no_grad():
        scaled = x / 1.5
        z = predict_potential(load_sdn(), scaled.reshape(-1, 128)).reshape(x.shape) + scaled - 1.0
    # d s / d x = triangle'(z) / threshold: no path through the membrane history
    torch.testing.assert_close(x.grad, (1 - z.abs()).clamp(min=0) / 1.5)
    assert threshold.grad is not None and threshold.grad.abs().sum() > 0


def test_threshold_acts_as_input_scaling():
    x = _randn(3, 4, 256, seed=5) * 2
    assert torch.equal(sdn_lif(x, threshold=2.0), sdn_lif(x / 2, threshold=1.0))
    per_channel = torch.tensor([0.5, 1.0, 2.0, 4.0])
    assert torch.equal(sdn_lif(x, threshold=per_channel), sdn_lif(x / per_channel[:, None]))


def test_tiny_training_run_writes_a_loadable_state_dict(tmp_path):
    out = tmp_path / "sub" / "sdn.pt"
    metrics = train_sdn(
        out, tau=0.2, samples=20, length=64, epochs=1, batch_size=4, progress=False, polish_iterations=5
    )
    assert metrics["params"] == 193 and 0 <= metrics["val_accuracy"] <= 1
    net = load_sdn(out)
    assert float(net.tau) == pytest.approx(0.2)
    assert [p.name for p in out.parent.iterdir()] == ["sdn.pt"]  # no temporary file left behind


@pytest.mark.parametrize("content", [b"\x80\x02}q\x00.", b"not a tensor file at all", None], ids=["empty dict", "text", "list"])
def test_unusable_weight_files_are_user_errors(content, tmp_path):
    path = tmp_path / "weights.pt"
    if content is None:
        torch.save([torch.zeros(3)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=f"(SDN|Surrogate Dynamic Network) weights {path}"):
        load_sdn(path)
    with pytest.raises(UserError, match="does not exist"):
        load_sdn(tmp_path / "missing.pt")


@pytest.mark.parametrize("tau", [-0.5, 1.5])
def test_training_and_evaluation_refuse_a_tau_outside_0_1(tau, tmp_path):
    with pytest.raises(UserError, match="tau must lie in"):
        evaluate_sdn(SDN(), tau=tau, n=2, length=8)
    with pytest.raises(UserError, match="tau must lie in"):
        train_sdn(tmp_path / "sdn.pt", tau=tau, samples=20, length=8, progress=False)
    assert not (tmp_path / "sdn.pt").exists()
