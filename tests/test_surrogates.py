"""Spike functions: Heaviside forward, each surrogate's derivative against its written-out formula."""

import math

import pytest
import torch

from spikessm.errors import UserError
from spikessm.neurons import SURROGATES, bernoulli_spike, spike, surrogate_grad, ternary_spike

POINTS = [-2.0, -0.5, 0.0, 0.3, 1.5]


def _sig(y):
    return 1 / (1 + math.exp(-y))


# Independent references, one scalar formula per surrogate, as the design states them.
FORMULAS = {
    "triangle": lambda z: max(0.0, 1 - abs(z)),
    "atan": lambda z: (2 / 2) / (1 + (math.pi * 2 * z / 2) ** 2),
    "fast_sigmoid": lambda z: 1 / (1 + 25 * abs(z)) ** 2,
    "sigmoid": lambda z: 4 * _sig(4 * z) * (1 - _sig(4 * z)),
    "straight_through": lambda z: 1.0,
}


def test_every_surrogate_has_a_reference():
    assert set(SURROGATES) == set(FORMULAS)


@pytest.mark.parametrize("name", SURROGATES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spike_forward_is_heaviside(name, dtype):
    x = torch.tensor([-1e-30, -0.0, 0.0, 1e-30, -3.0, 2.0], dtype=dtype)
    s = spike(x, name)
    assert s.dtype == dtype
    assert s.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 1.0]  # -0.0 >= 0 holds


@pytest.mark.parametrize("name", SURROGATES)
def test_spike_gradient_is_upstream_times_formula(name):
    x = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([0.5, -1.0, 2.0, 3.0, -0.25], dtype=torch.float64)
    spike(x, name).backward(upstream)
    expected = [g * FORMULAS[name](z) for g, z in zip(upstream.tolist(), POINTS)]
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", SURROGATES)
def test_surrogate_grad_matches_formula_and_keeps_dtype(name):
    z = torch.tensor(POINTS, dtype=torch.float32)
    d = surrogate_grad(z, name)
    assert d.dtype == torch.float32 and d.shape == z.shape
    assert d.tolist() == pytest.approx([FORMULAS[name](p) for p in POINTS], rel=1e-6, abs=1e-7)


def test_sigmoid_surrogate_survives_large_inputs():
    d = surrogate_grad(torch.tensor([-1e4, 1e4], dtype=torch.float32), "sigmoid")
    assert d.tolist() == [0.0, 0.0]


def test_unknown_surrogate_is_a_user_error():
    with pytest.raises(UserError, match="surrogate.*triangle"):
        spike(torch.zeros(3), "relu")
    with pytest.raises(UserError, match="surrogate"):
        surrogate_grad(torch.zeros(3), "gauss")


def test_bernoulli_gradient_is_stochastic_straight_through():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0], dtype=torch.float64)
    s = bernoulli_spike(x, generator=torch.Generator().manual_seed(0))
    s.backward(upstream)
    p = [_sig(v) for v in x.tolist()]
    assert set(s.tolist()) <= {0.0, 1.0}
    assert x.grad.tolist() == pytest.approx([g * q * q * (1 - q) for g, q in zip(upstream.tolist(), p)])


def test_bernoulli_fires_at_rate_sigmoid_x():
    x = torch.tensor([-2.0, 0.0, 1.0])
    n = 20000
    s = bernoulli_spike(x.expand(n, 3), generator=torch.Generator().manual_seed(1))
    rate = s.mean(0)
    p = torch.sigmoid(x)
    # 5 standard errors: a wrong rate (e.g. H(x) or 0.5) fails, sampling noise does not.
    assert torch.all((rate - p).abs() < 5 * torch.sqrt(p * (1 - p) / n))


def test_bernoulli_is_reproducible_with_a_seeded_generator():
    x = torch.randn(100)
    a = bernoulli_spike(x, generator=torch.Generator().manual_seed(3))
    b = bernoulli_spike(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_ternary_forward_by_hand():
    x = torch.tensor([-2.0, -0.5, -0.49, 0.0, 0.2, 0.5, 3.0])
    assert ternary_spike(x, 0.5).tolist() == [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    per_channel = torch.tensor([[0.1], [1.0]])
    y = ternary_spike(torch.tensor([[-0.3, 0.3], [-0.3, 0.3]]), per_channel)
    assert y.tolist() == [[-1.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("name", SURROGATES)
def test_ternary_gradients_use_surrogate_at_abs_x_minus_threshold(name):
    x = torch.tensor([-1.2, -0.4, 0.3, 0.7, 2.0], dtype=torch.float64, requires_grad=True)
    threshold = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    ternary_spike(x, threshold, surrogate=name).sum().backward()
    d = [FORMULAS[name](abs(v) - 0.5) for v in x.tolist()]
    assert x.grad.tolist() == pytest.approx(d, rel=1e-12, abs=1e-15)
    sign = [math.copysign(1.0, v) for v in x.tolist()]
    assert threshold.grad.item() == pytest.approx(-sum(s * q for s, q in zip(sign, d)), rel=1e-12, abs=1e-15)


def test_ternary_keeps_x_dtype_with_a_float64_threshold():
    y = ternary_spike(torch.tensor([0.7, -0.7]), torch.tensor(0.5, dtype=torch.float64))
    assert y.dtype == torch.float32
