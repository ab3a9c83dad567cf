"""``spikessm report``: the figures and report.md of a small spiking run and of an ANN run."""
import importlib.util

import numpy as np
import pytest
from PIL import Image

from spikessm.cli import main
from spikessm.report import spike_trains

TINY = ["--epochs", "2", "--quiet", "--set", "model.d_model=8", "--set", "model.n_layers=2",
        "--set", "model.d_state=4", "--set", "train.threads=1", "--set", "train.batch_size=128"]


@pytest.fixture(scope="module")
def spiking_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spiking")
    assert main(["train", "--model", "binary-s4d", *TINY, "--out", str(out)]) == 0
    return out


def test_report_of_a_spiking_run(spiking_run, capsys):
    assert main(["report", str(spiking_run)]) == 0
    assert "report.md" in capsys.readouterr().out
    folder = spiking_run / "report"
    md = (folder / "report.md").read_text()
    for name in ("curves", "firing", "raster", "energy"):
        with Image.open(folder / f"{name}.png") as image:
            assert image.width > 300 and image.height > 200
        assert f"]({name}.png)" in md
    assert "test accuracy" in md and "| blocks.1 |" in md


def test_the_raster_holds_every_spiking_layer_channels_by_time(spiking_run):
    trains, label = spike_trains(spiking_run / "best.pt", index=3)
    assert list(trains) == ["blocks.0.activation", "blocks.1.activation"]
    for spikes in trains.values():
        assert spikes.shape == (8, 64) and set(np.unique(spikes)) <= {0.0, 1.0}
    assert 0 <= label < 10


def test_report_of_an_ann_run_skips_the_spiking_figures(tmp_path):
    assert main(["train", "--model", "s4d", *TINY, "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert files == {"report.md", "curves.png", "energy.png"}
    assert "no spiking layers" in (tmp_path / "r" / "report.md").read_text()


def test_report_of_an_unfinished_run_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_tensorboard_events_exactly_when_the_package_is_installed(spiking_run):
    installed = importlib.util.find_spec("tensorboard") is not None  # the extra spikessm[tensorboard]
    assert bool(list((spiking_run / "tensorboard").glob("events.out.tfevents.*"))) == installed
