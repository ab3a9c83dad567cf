"""The two baselines: the Transformer (causal mask, padding, streaming by recomputation) and the
recurrent SNN (its equations by hand, step by step = unrolled, its synaptic operation count)."""
import json
import math

import pytest
import torch

from spikessm import ModelConfig
from spikessm.errors import UserError
from spikessm.metrics.energy import layer_operations
from spikessm.metrics.firing import FiringRecorder
from spikessm.models.transformer import sinusoidal_positions


def transformer(kind="lm", bidirectional=False, **block):
    torch.manual_seed(0)
    ids = {"d_input": None, "vocab_size": 11} if kind == "lm" else {}
    return ModelConfig(name="transformer", kind=kind, n_classes=11, d_model=16, n_layers=2, prenorm=True,
                       bidirectional=bidirectional, block={"n_heads": 2, **block}, **ids).build().eval()


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_a_future_token_cannot_change_an_earlier_output(positions):
    model = transformer(positions=positions, max_len=32)
    x = torch.randint(0, 11, (2, 12))
    changed = x.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 11
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_without_the_causal_mask_the_future_does_change_the_past():
    """The check above can fail: a bidirectional classifier's pooled output sees every step."""
    model = transformer(kind="classify", bidirectional=True)
    x = torch.randn(2, 12, 1)
    changed = x.clone()
    changed[:, -1] += 1
    with torch.no_grad():
        assert not torch.allclose(model.features(x)[..., 0], model.features(changed)[..., 0])


def test_padding_is_never_attended_to():
    model = transformer(kind="classify", bidirectional=True)
    x = torch.randn(1, 9, 1)
    padded = torch.cat([x, torch.randn(1, 5, 1)], dim=1)
    with torch.no_grad():
        alone = model(x)
        with_padding = model(padded, torch.tensor([9]))
    assert torch.allclose(alone, with_padding, atol=1e-5)


def test_sinusoidal_positions_follow_the_formula():
    P = sinusoidal_positions(5, 6, torch.zeros(1, dtype=torch.float64))
    for t in range(5):
        for i in range(3):
            angle = t / 10000 ** (2 * i / 6)
            assert P[t, 2 * i].item() == pytest.approx(math.sin(angle))
            assert P[t, 2 * i + 1].item() == pytest.approx(math.cos(angle))


@pytest.mark.parametrize("kind", ["lm", "classify"])
def test_transformer_streams_by_recomputation(kind):
    model = transformer(kind=kind)
    x = torch.randint(0, 11, (2, 10)) if kind == "lm" else torch.randn(2, 10, 1)
    state, outs = model.initial_state(2), []
    for t in range(10):
        out, state = model.step(x[:, t], state)
        outs.append(out)
    with torch.no_grad():
        parallel = model(x)
    streamed = torch.stack(outs, dim=1) if kind == "lm" else outs[-1]
    assert torch.allclose(streamed, parallel, atol=1e-5)


def test_transformer_option_errors():
    with pytest.raises(UserError, match="n_heads=3 must be a positive integer dividing model.d_model=16"):
        transformer(n_heads=3)
    with pytest.raises(UserError, match="needs model.max_len"):
        transformer(positions="learned")
    with pytest.raises(UserError, match="causal attention"):
        transformer(bidirectional=True)
    with pytest.raises(UserError, match="longer than the learned positions"):
        transformer(positions="learned", max_len=4)(torch.zeros(1, 5, dtype=torch.long))


# ---- the recurrent SNN


def rsnn(d_model=8, n_layers=2, **block):
    torch.manual_seed(0)
    return ModelConfig(name="rsnn", n_classes=3, d_model=d_model, n_layers=n_layers, d_input=2, block=block).build()


def alif_by_hand(current, W_rec, alpha, rho, theta0, beta):
    """The module docstring's equations, one neuron and one step at a time in plain Python floats."""
    L, H = len(current), len(current[0])
    u, a, s, out = [0.0] * H, [0.0] * H, [0.0] * H, []
    for t in range(L):
        rec = [sum(W_rec[j][k] * s[k] for k in range(H)) for j in range(H)]
        new_s = []
        for j in range(H):
            theta = theta0 + beta * a[j]
            v = alpha[j] * u[j] + (1 - alpha[j]) * (current[t][j] + rec[j])
            spike = 1.0 if v - theta >= 0 else 0.0
            u[j], a[j] = v - theta * spike, rho[j] * a[j] + (1 - rho[j]) * spike
            new_s.append(spike)
        s = new_s
        out.append(s)
    return out


def test_alif_layer_follows_its_equations():
    model = rsnn(d_model=5, theta0=0.05, beta=1.8, tau_m=3.0, tau_adp=10.0)
    layer = model.blocks[0]
    with torch.no_grad():
        layer.recurrent.weight.normal_(0, 0.5)
        layer.ln_tau_m.uniform_(0.5, 3)
    current = torch.randn(1, 30, 5, dtype=torch.float64)
    layer.double()
    alpha, rho = (d.tolist() for d in layer.decays())
    expected = alif_by_hand(current[0].tolist(), layer.recurrent.weight.tolist(), alpha, rho, 0.05, 1.8)
    with torch.no_grad():
        got = layer(current)[0].tolist()
    assert got == expected
    assert 0 < sum(map(sum, expected)) < 30 * 5  # neither silent nor saturated


@pytest.mark.parametrize("pool", ["mean", "last"])
@pytest.mark.parametrize("tau_out", [0.0, 10.0])  # spike-count and membrane readout
def test_rsnn_step_by_step_equals_unrolled(pool, tau_out):
    model = rsnn(theta0=0.02, tau_out=tau_out)
    model.pool = pool
    model.eval()
    x = torch.rand(3, 25, 2)
    state = model.initial_state(3)
    for t in range(25):
        out, state = model.step(x[:, t], state)
    with torch.no_grad():
        parallel = model(x)
        spikes = model.features(x)
    assert spikes.sum() > 0
    assert torch.allclose(out, parallel, atol=1e-6)


def test_rsnn_trains_its_time_constants_and_weights():
    model = rsnn(theta0=0.02)
    loss = model(torch.rand(4, 20, 2)).logsumexp(-1).mean()
    loss.backward()
    for name in ("blocks.0.ln_tau_m", "blocks.1.input.weight", "blocks.1.recurrent.weight", "encoder.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_recurrent_ac_count_on_a_hand_computed_network():
    """Two layers of two neurons, no leak (alpha = 0), no adaptation, threshold 0.5, three steps of input
    x = (1, 0, 1) into neuron 0 of layer 0 only, so by hand:
      layer 0: neuron 0 fires at t = 0 and 2, neuron 1 never (its input and all recurrent weights are 0)
      layer 1: both neurons receive neuron 0's spike through weight 1: both fire at t = 0 and 2.
    Each spike costs one AC per synapse it reaches: layer 0's 2 spikes reach 2 recurrent synapses each
    (4 ACs); layer 1's 4 spikes reach 2 recurrent synapses each (8) and layer 0's 2 spikes reach
    layer 1's 2 input synapses each (4): 12."""
    model = ModelConfig(name="rsnn", n_classes=2, d_model=2, n_layers=2, d_input=1,
                        block={"tau_m": 1e-3, "beta": 0.0, "theta0": 0.5}).build().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for layer in model.blocks:
            layer.ln_tau_m.fill_(math.log(1e-3))
        model.encoder.weight[0, 0] = 1.0
        model.blocks[1].input.weight[:, 0] = 1.0
    x = torch.tensor([[[1.0], [0.0], [1.0]]])
    with FiringRecorder(model) as recorder, torch.no_grad():
        model(x)
    h = model.encoder(x)
    first = model.blocks[0](h)
    assert first[0].tolist() == [[1, 0], [0, 0], [1, 0]]
    assert model.blocks[1](model.blocks[1].input(first))[0].tolist() == [[1, 1], [0, 0], [1, 1]]
    rates = recorder.rates()
    assert rates == {"blocks.0": pytest.approx(2 / 6), "blocks.1": pytest.approx(4 / 6)}
    rows = {r["layer"]: r for r in layer_operations(model, 3, rates)}
    assert rows["blocks.0"]["ac"] == pytest.approx(4)
    assert rows["blocks.1"]["ac"] == pytest.approx(12)
    # the ANN equivalent: both maps dense, 3 steps x 2 x 2 each (layer 0's input map is the encoder row)
    assert rows["blocks.0"]["ann_energy_j"] > rows["blocks.0"]["energy_j"]
    assert rows["encoder"]["mac"] == 3 * 1 * 2


def test_membrane_readout_is_a_leaky_integrator_of_the_spikes():
    model = rsnn(tau_out=4.0)
    spikes = (torch.rand(2, 9, 8) < 0.3).float()
    kappa, r = math.exp(-1 / 4), torch.zeros(2, 8)
    for t in range(9):
        r = kappa * r + (1 - kappa) * spikes[:, t]
    assert torch.allclose(model.readout(spikes)[:, -1], r)
    assert torch.equal(rsnn(tau_out=0.0).readout(spikes), spikes)


def test_rsnn_is_causal_only():
    with pytest.raises(UserError, match="recurrent, hence causal"):
        ModelConfig(name="rsnn", bidirectional=True).build()


# ---- through the command line


@pytest.mark.parametrize("model, task, sets", [
    ("transformer", "sdigits", ["model.n_heads=2"]),
    ("rsnn", "sdigits", ["model.pool=last"]),
    ("transformer", "chars", ["model.n_heads=2", "data.seq_len=32", "data.train_samples=8", "data.eval_samples=2"]),
    ("transformer", "retrieval", ["model.n_heads=2", "model.bidirectional=true"]),
])
def test_baselines_train_and_stream_from_the_command_line(model, task, sets, tmp_path, capsys):
    from spikessm.cli import main

    if task == "chars":
        corpus = tmp_path / "text.txt"
        corpus.write_text("to be or not to be, that is the question. " * 40)
        sets = [*sets, f"data.path={corpus}"]
    if task == "retrieval":
        from test_data_lra import write_aan

        write_aan(tmp_path / "tsv_data")
        sets = [*sets, f"data.dir={tmp_path}"]
    out = tmp_path / "run"
    sets = ["model.d_model=8", "model.n_layers=1", *sets]
    assert main(["train", "--model", model, "--task", task, "--epochs", "1", "--out", str(out), "--quiet",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    capsys.readouterr()
    if task == "retrieval":  # two documents at once: nothing to stream
        assert json.loads((out / "summary.json").read_text())["energy"]["mac"] > 0
        return
    assert main(["stream", str(out / "best.pt"), "--count", "1"]) == 0
    printed = capsys.readouterr().out
    assert "per-step latency" in printed
    assert ("100.00% of steps agree with the parallel pass" if task == "chars" else
            "(matches the parallel pass") in printed, printed
