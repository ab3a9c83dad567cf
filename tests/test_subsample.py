"""data.train_samples / data.eval_samples: fixed, seed-independent subsets for equal-budget runs."""
import pytest
import torch

from spikessm.errors import UserError
from spikessm.train.config import build_config
from spikessm.data.loading import load_data


def _labels(dataset):
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


def test_subsets_have_the_requested_sizes_and_come_from_their_split():
    _, full = load_data(build_config())
    cfg = build_config(sets=["data.train_samples=100", "data.eval_samples=40"])
    _, small = load_data(cfg)
    assert (len(small.train), len(small.val), len(small.test)) == (100, 40, 40)
    # every kept example is an example of the same split, in the original order
    train_x = torch.stack([full.train[i][0] for i in range(len(full.train))])
    kept = [small.train.indices[i] for i in range(100)]
    assert kept == sorted(kept)
    assert torch.equal(torch.stack([small.train[i][0] for i in range(100)]), train_x[kept])


def test_subset_does_not_depend_on_the_run_seed():
    a = load_data(build_config(sets=["data.train_samples=50", "seed=1"]))[1]
    b = load_data(build_config(sets=["data.train_samples=50", "seed=2"]))[1]
    assert a.train.indices == b.train.indices
    assert torch.equal(_labels(a.train), _labels(b.train))


def test_zero_or_too_many_keeps_the_whole_split():
    _, full = load_data(build_config())
    _, same = load_data(build_config(sets=["data.train_samples=0", "data.eval_samples=100000"]))
    assert (len(same.train), len(same.val)) == (len(full.train), len(full.val))


def test_negative_sample_count_is_a_config_error():
    with pytest.raises(UserError, match="data.train_samples"):
        build_config(sets=["data.train_samples=-1"])
