"""Every shipped preset resolves to a valid config and builds its model, without any data."""
import pytest
import torch

from spikessm.data.registry import get_task
from spikessm.models import build_model
from spikessm.train.config import build_config, list_presets


def test_there_are_presets_for_both_papers():
    names = set(list_presets())
    for task in ("listops", "text", "retrieval", "image", "pathfinder", "pathx"):
        assert f"spikingssm/{task}" in names and f"binary-s4d/{task}" in names
    assert {"spikingssm/smnist", "spikingssm/psmnist", "spikingssm/wikitext103"} <= names


@pytest.mark.parametrize("name", list_presets())
def test_preset_builds_its_model(name):
    cfg = build_config(preset=name)
    task = get_task(cfg["task"])
    with torch.device("meta"):  # shapes only: the large presets would not fit a test's memory
        model = build_model(cfg["model"], task.nominal_splits(), task.kind)
    assert len(model.blocks) == cfg["model"]["n_layers"]
    assert model.d_model == cfg["model"]["d_model"] == model.encoder.weight.shape[-1 if task.vocab_size else 0]
    if hasattr(model.blocks[0], "activation"):  # an S4D block: spiking unless an ANN model
        assert type(model.blocks[0].activation).__name__ != "GELU" or cfg["model"]["name"] in ("s4d", "s4d-gsu")


def test_presets_for_the_baselines():
    names = set(list_presets())
    assert {f"transformer/{t}" for t in ("listops", "text", "retrieval", "image", "pathfinder", "pathx")} <= names
    for task in ("smnist", "psmnist"):  # the size of the recurrent SNNs the papers compare with (~155k)
        cfg = build_config(preset=f"rsnn/{task}")
        model = build_model(cfg["model"], get_task(task).nominal_splits(), "classify")
        assert 150_000 <= sum(p.numel() for p in model.parameters()) <= 160_000


def test_preset_values_reach_the_config():
    cfg = build_config(preset="spikingssm/listops")
    assert cfg["model"]["d_state"] == 4 and cfg["model"]["bidirectional"] is True
    assert cfg["train"]["batch_size"] == 32 and cfg["train"]["epochs"] == 40
    # flags and --set still win over the preset
    cfg = build_config(preset="spikingssm/listops", flags={"train": {"epochs": 2}}, sets=["model.d_model=16"])
    assert cfg["train"]["epochs"] == 2 and cfg["model"]["d_model"] == 16
