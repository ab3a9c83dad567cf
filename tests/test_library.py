"""spikessm as a library: public layers with both layouts, optimiser hints, ModelConfig, load_model
without data, and safe pretrained directories (config.json + model.safetensors)."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import spikessm
from spikessm import (LIF, S4D, BinaryS4DBlock, GSUBlock, ModelConfig, S4DBlock, SpikingS4DBlock, from_pretrained,
                      load_model, param_groups)
from spikessm.cli import main
from spikessm.errors import UserError
from spikessm.train.checkpoint import load_checkpoint, save_checkpoint
from spikessm.train.config import build_config
from spikessm.train.loop import train


def reference_lif(x, tau, threshold):
    """Hard-reset LIF written out plainly: x (B, H, L), threshold (H,)."""
    u = torch.zeros_like(x[..., 0])
    out = []
    for t in range(x.shape[-1]):
        v = tau * u + x[..., t]
        s = (v >= threshold).to(x.dtype)
        u = v * (1 - s)
        out.append(s)
    return torch.stack(out, -1)


def test_public_names_import_from_the_package():
    for name in spikessm.__all__:
        assert getattr(spikessm, name) is not None
    with pytest.raises(AttributeError):
        spikessm.nothing_here  # noqa: B018


def test_lif_module_fires_like_the_lif_equations_with_per_channel_thresholds():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 50, dtype=torch.float64) * 2
    neuron = LIF(4, tau=0.25).double()
    with torch.no_grad():
        neuron.ln_vth.copy_(torch.log(torch.tensor([[0.5], [1.0], [1.5], [2.0]], dtype=torch.float64)))
    expected = reference_lif(x / neuron.threshold.view(-1, 1), 0.25, 1.0)
    assert torch.equal(neuron(x), expected)
    # Property 1 of SpikingSSMs: dividing by the threshold = firing at that threshold (up to rounding)
    assert (neuron(x) != reference_lif(x, 0.25, neuron.threshold.view(1, -1))).float().mean() < 1e-3
    # batch-first layout, and step by step
    first = LIF(4, tau=0.25, transposed=False).double()
    first.load_state_dict(neuron.state_dict())
    assert torch.equal(first(x.transpose(1, 2)).transpose(1, 2), expected)
    u, steps = neuron.initial_state(3), []
    for t in range(50):
        s, u = neuron.step(x[..., t], u)
        steps.append(s)
    assert torch.equal(torch.stack(steps, -1), expected)


def test_lif_module_learns_its_threshold_and_tau():
    neuron = LIF(4, tau=0.5, learn_tau=True)
    x = torch.randn(2, 4, 30, requires_grad=True)
    neuron(x).sum().backward()
    assert neuron.ln_vth.grad is not None and neuron.tau_logit.grad is not None
    assert torch.allclose(neuron.tau, torch.full((4,), 0.5))
    with pytest.raises(UserError, match="tau"):
        LIF(4, tau=1.0, learn_tau=True)
    with pytest.raises(UserError, match="reset must be one of"):
        LIF(4, reset="soft-ish")


@pytest.mark.parametrize("make", [lambda **k: S4DBlock(6, d_state=4, **k), lambda **k: BinaryS4DBlock(6, d_state=4, **k),
                                  lambda **k: GSUBlock(6, d_state=4, **k), lambda **k: SpikingS4DBlock(6, d_state=4, **k),
                                  lambda **k: S4D(6, d_state=4, **k)])
def test_layers_take_either_layout(make):
    torch.manual_seed(0)
    channels_first = make().double().eval()
    batch_first = make(transposed=False).double().eval()
    batch_first.load_state_dict(channels_first.state_dict())
    u = torch.randn(2, 6, 40, dtype=torch.float64)
    torch.testing.assert_close(batch_first(u.transpose(1, 2)).transpose(1, 2), channels_first(u))


def test_ssm_parameters_carry_s4_style_optimiser_hints():
    layer = S4D(8, d_state=4, lr=0.002)
    hinted = {name for name, p in layer.named_parameters() if hasattr(p, "_optim")}
    assert hinted == {"kernel.log_dt", "kernel.log_A_real", "kernel.A_imag"}
    assert layer.kernel.log_dt._optim == {"lr": 0.002, "weight_decay": 0.0}
    groups = param_groups(layer, lr=0.01, weight_decay=0.1)
    assert [(len(g["params"]), g["lr"], g["weight_decay"]) for g in groups] == [(2, 0.01, 0.1), (3, 0.002, 0.0)]
    # train.ssm_lr replaces the hint's lr; a hint never raises a parameter above the base lr
    assert param_groups(layer, 0.01, 0.1, hinted_lr=0.0005)[1]["lr"] == 0.0005
    assert param_groups(layer, 0.001, 0.1)[1]["lr"] == 0.001


class MyClassifier(nn.Module):
    """Someone's own model around a spiking block, batch-first."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(1, 16)
        self.block = SpikingS4DBlock(16, d_state=8, transposed=False)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.block(self.encoder(x)).mean(1))


def test_a_spiking_block_trains_inside_a_users_model():
    torch.manual_seed(0)
    x = torch.randn(64, 32, 1)
    y = (x.mean((1, 2)) > 0).long()
    model = MyClassifier()
    optimizer = torch.optim.AdamW(param_groups(model, lr=0.01, weight_decay=0.01))
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_model_config_round_trips_and_validates():
    config = ModelConfig(name="binary-s4d", d_model=8, n_layers=1, d_state=4, n_classes=3, d_input=2)
    assert config.block == {"spike": "atan"}
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad, needle in [({"name": "nope"}, "unknown model"), ({"pool": "avg"}, "pool must be one of"),
                        ({"block": {"tau": 0.5}}, "no option 'tau'"), ({"d_input": None}, "exactly one"),
                        ({"color": 1}, "unknown model config key")]:
        with pytest.raises(UserError, match=needle):
            ModelConfig.from_dict({**config.to_dict(), **bad}, "x.json")


def test_choice_options_fail_before_any_data_is_read(tmp_path):
    with pytest.raises(UserError, match="model.pool must be one of"):
        build_config(task="listops", sets=["model.pool=avg", f"data.dir={tmp_path / 'nowhere'}"])
    with pytest.raises(UserError, match="model.reset must be one of"):
        build_config(sets=["model.reset=hardest"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lib") / "run"
    cfg = build_config(task="sdigits", model="spikingssm", flags={"train": {"epochs": 1}},
                       sets=["model.d_model=8", "model.n_layers=1", "model.d_state=4", "data.train_samples=64",
                             "data.eval_samples=32"])
    train(cfg, run, progress=False)
    return run


def reference_model(run):
    """The trained model rebuilt the old way: from the task's data and the training config."""
    from spikessm.data.loading import load_data
    from spikessm.models import build_model

    ckpt = load_checkpoint(run / "best.pt")
    task, splits = load_data(ckpt["config"])
    model = build_model(ckpt["config"]["model"], splits, task.kind)
    model.load_state_dict(ckpt["model"])
    return model.eval(), splits


def test_load_model_needs_no_data_and_equals_the_trained_model(tiny_run, tmp_path, monkeypatch):
    reference, splits = reference_model(tiny_run)
    x = torch.stack([splits.test[i][0] for i in range(8)])
    monkeypatch.setenv("SPIKESSM_DATA", str(tmp_path / "nowhere"))
    for source in (tiny_run, tiny_run / "best.pt", tiny_run / "last.pt"):
        model = load_model(source)
        assert not model.training
        with torch.no_grad():
            assert torch.equal(model(x), reference(x))
    # a checkpoint saved before checkpoints held a ModelConfig
    old = load_checkpoint(tiny_run / "best.pt")
    del old["model_config"], old["vocab"]
    save_checkpoint(tmp_path / "old.pt", {k: v for k, v in old.items() if k not in ("format", "version")})
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "old.pt")(x), reference(x))


def test_save_pretrained_and_from_pretrained_give_the_same_model(tiny_run, tmp_path):
    reference, splits = reference_model(tiny_run)
    x = torch.stack([splits.test[i][0] for i in range(8)])
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "pre")]) == 0
    assert sorted(p.name for p in (tmp_path / "pre").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "pre" / "config.json").read_text())
    assert config["task"] == "sdigits" and config["model"]["name"] == "spikingssm"
    assert 0 <= config["metrics"]["test_accuracy"] <= 1
    model = from_pretrained(tmp_path / "pre")
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    model.save_pretrained(tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(from_pretrained(str(tmp_path / "again"))(x), reference(x))
    # the weights file is safetensors: an 8-byte header length, then JSON, no pickle opcodes
    raw = (tmp_path / "pre" / "model.safetensors").read_bytes()
    assert raw[8:9] == b"{" and b"\x80\x04" not in raw[:2]


def crafted(tmp_path, tiny_run, change):
    """A pretrained directory exported from the tiny run, then altered by ``change(dir)``."""
    out = tmp_path / "crafted"
    main(["export", str(tiny_run), "--out", str(out)])
    change(out)
    return out


def edit_config(edit):
    def change(out):
        config = json.loads((out / "config.json").read_text())
        edit(config)
        (out / "config.json").write_text(json.dumps(config))
    return change


def edit_weights(edit):
    def change(out):
        from safetensors.torch import load_file, save_file
        tensors = load_file(out / "model.safetensors")
        edit(tensors)
        save_file(tensors, out / "model.safetensors")
    return change


@pytest.mark.parametrize("change, needle", [
    (edit_config(lambda c: c["model"].update(name="mystery")), "unknown model 'mystery'"),
    (edit_config(lambda c: c["model"].update(d_model=9)), "has shape"),
    (edit_config(lambda c: c.update(format="other")), "not a spikessm pretrained config"),
    (edit_config(lambda c: c["model"].update(pool="avg")), "pool must be one of"),
    (lambda out: (out / "config.json").write_text("{not json"), "not valid JSON"),
    (edit_weights(lambda t: t.update(extra=torch.zeros(2))), "unexpected tensor 'extra'"),
    (edit_weights(lambda t: t.pop("decoder.bias")), "missing tensor 'decoder.bias'"),
    (edit_weights(lambda t: t.update({"decoder.bias": torch.zeros(11)})), "'decoder.bias' has shape (11,)"),
    (edit_weights(lambda t: t.update({"decoder.bias": torch.full((10,), float("nan"))})), "non-finite"),
    (lambda out: (out / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage"),
     "not a readable safetensors file"),
    (lambda out: (out / "model.safetensors").unlink(), "does not exist"),
])
def test_crafted_pretrained_directories_exit_2_with_one_line(tiny_run, tmp_path, change, needle):
    out = crafted(tmp_path, tiny_run, change)
    result = subprocess.run([sys.executable, "-m", "spikessm", "stream", "--pretrained", str(out)],
                            capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr


def test_eval_stream_report_need_no_data_where_they_do_not_read_it(tiny_run, tmp_path, capsys):
    nowhere = str(tmp_path / "nowhere")
    assert main(["eval", str(tiny_run / "best.pt"), "--data-dir", nowhere]) == 0  # sdigits is embedded
    assert main(["stream", str(tiny_run / "best.pt"), "--data-dir", nowhere]) == 0
    assert main(["report", str(tiny_run), "--data-dir", nowhere, "--out", str(tmp_path / "rep")]) == 0
    assert "streamed prediction" in capsys.readouterr().out


def test_a_run_whose_data_is_gone_still_loads_and_reports(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 80)
    cfg = build_config(task="chars", model="spikingssm", flags={"train": {"epochs": 1}},
                       sets=[f"data.path={text}", "data.seq_len=32", "model.d_model=8", "model.n_layers=1",
                             "model.d_state=4"])
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    text.unlink()
    model = load_model(run)
    assert model.kind == "lm" and model.info["vocab"][0] == "<pad>" and len(model.info["vocab"]) == model.config.vocab_size
    assert main(["report", str(run)]) == 0
    assert "No spike raster" in (run / "report" / "report.md").read_text()
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2  # eval needs the test split
    assert "no text file" in capsys.readouterr().err


def test_the_shipped_digit_model_scores_what_its_card_says():
    from spikessm.data.loading import load_data
    from spikessm.pretrained import available

    assert {"spikingssm-sdigits", "spikingssm-chars"} <= set(available())
    model = from_pretrained("spikingssm-sdigits")
    assert model.config.name == "spikingssm" and model.info["task"] == "sdigits"
    _, splits = load_data(build_config(task="sdigits"))
    x = torch.stack([splits.test[i][0] for i in range(len(splits.test))])
    y = torch.stack([splits.test[i][1] for i in range(len(splits.test))])
    with torch.no_grad():
        accuracy = (model(x).argmax(-1) == y).float().mean().item()
    assert accuracy == pytest.approx(model.info["metrics"]["test_accuracy"], abs=1e-6)
    assert accuracy > 0.95


def test_stream_pretrained_runs_right_after_install(capsys, tmp_path):
    assert main(["stream", "--pretrained", "spikingssm-sdigits", "--index", "3", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model spikingssm" in out and "matches the parallel pass" in out
    # the character LM streams the text it ships when its corpus is not at hand
    assert main(["stream", "--pretrained", "spikingssm-chars"]) == 0
    out = capsys.readouterr().out
    assert "shipped sample text" in out and "100.00% of steps agree" in out
    assert main(["stream"]) == 2


def test_model_config_fields_are_the_config_files_model_options():
    from dataclasses import fields

    from spikessm.models.spec import COMMON_OPTIONS

    names = {f.name for f in fields(ModelConfig)}
    assert set(COMMON_OPTIONS) <= names
    assert names - set(COMMON_OPTIONS) == {"name", "kind", "n_classes", "d_input", "vocab_size", "block"}
    defaults = ModelConfig()
    assert {k: getattr(defaults, k) for k in COMMON_OPTIONS} == COMMON_OPTIONS
