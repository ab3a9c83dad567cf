"""LIF neuron: the loop reference against hand values and a scalar BPTT, the other backends against the loop."""

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikessm.errors import UserError
from spikessm.neurons import LIF_BACKENDS, lif, lif_step
from spikessm.neurons.fused import lif_fused
from spikessm.neurons.surrogates import SURROGATES, surrogate_grad

EXACT_BACKENDS = ["fused", "scan"]  # spikes bit-identical to the loop

# x = [0.5, 0.75, 1.5, 0.75], tau = 0.5, threshold = 1: every value is exact in binary, and step 1 lands
# exactly on the threshold (v >= threshold spikes).
#   hard: v = 0.5, 1.0, 1.5, 0.75   s = 0, 1, 1, 0   u = 0.5, 0, 0, 0.75
#   soft: v = 0.5, 1.0, 1.5, 1.0    s = 0, 1, 1, 1   u = 0.5, 0, 0.5, 0
HAND_X = [0.5, 0.75, 1.5, 0.75]
HAND = {
    "hard": dict(v=[0.5, 1.0, 1.5, 0.75], s=[0, 1, 1, 0], u=[0.5, 0.0, 0.0, 0.75]),
    "soft": dict(v=[0.5, 1.0, 1.5, 1.0], s=[0, 1, 1, 1], u=[0.5, 0.0, 0.5, 0.0]),
}


def _scalar_lif(x, tau, thr, reset, dsig, upstream):
    """Spikes and BPTT gradients (dx, dtau, dthreshold) of one neuron, in plain Python floats."""
    v, s, u_prev = [], [], [0.0]
    for x_t in x:
        v_t = tau * u_prev[-1] + x_t
        s_t = 1.0 if v_t >= thr else 0.0
        v.append(v_t)
        s.append(s_t)
        u_prev.append(v_t * (1 - s_t) if reset == "hard" else v_t - thr * s_t)
    dx, dtau, dthr, dv_next = [0.0] * len(x), 0.0, 0.0, 0.0
    for t in reversed(range(len(x))):
        direct = upstream[t] * dsig(v[t] - thr)  # through s_t = H(v_t - thr)
        du = tau * dv_next  # u_t feeds v_{t+1} = tau u_t + x_{t+1}
        dv = direct + (du * (1 - s[t]) if reset == "hard" else du)  # the reset factor s_t is a constant
        dthr += -direct - (du * s[t] if reset == "soft" else 0.0)
        dtau += dv * u_prev[t]
        dx[t] = dv
        dv_next = dv
    return s, dx, dtau, dthr


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_lif_step_by_hand(reset):
    u = torch.zeros(())
    for t, x_t in enumerate(HAND_X):
        v_expected = 0.5 * u.item() + x_t
        s, u = lif_step(torch.tensor(x_t), u, tau=0.5, threshold=1.0, reset=reset)
        assert v_expected == HAND[reset]["v"][t]
        assert s.item() == HAND[reset]["s"][t]
        assert u.item() == HAND[reset]["u"][t]


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("backend", ["loop", *EXACT_BACKENDS])
def test_spikes_by_hand(reset, backend):
    x = torch.tensor([HAND_X, HAND_X[::-1]])
    s = lif(x, tau=0.5, threshold=1.0, reset=reset, backend=backend)
    assert s[0].tolist() == HAND[reset]["s"]
    # Reversed input: hard v = 0.75, 1.875 (spike), 0.75, 0.875; soft keeps u = 0.875 and spikes again.
    assert s[1].tolist() == ([0, 1, 0, 0] if reset == "hard" else [0, 1, 1, 0])


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_loop_gradients_match_scalar_bptt(reset, surrogate):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 13, generator=g, dtype=torch.float64) + 0.6).requires_grad_()
    tau = torch.tensor([0.3, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    thr = torch.tensor([0.8, 1.0, 1.2], dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 13, generator=g, dtype=torch.float64)

    def dsig(z):  # the formulas themselves are checked in test_surrogates.py
        return surrogate_grad(torch.tensor(z, dtype=torch.float64), surrogate).item()

    s = lif(x, tau, thr, reset=reset, surrogate=surrogate, backend="loop")
    s.backward(upstream)
    for i in range(3):
        s_ref, dx, dtau, dthr = _scalar_lif(
            x[i].tolist(), tau[i].item(), thr[i].item(), reset, dsig, upstream[i].tolist()
        )
        assert s[i].tolist() == s_ref
        assert x.grad[i].tolist() == pytest.approx(dx, rel=1e-10, abs=1e-12)
        assert tau.grad[i].item() == pytest.approx(dtau, rel=1e-10, abs=1e-12)
        assert thr.grad[i].item() == pytest.approx(dthr, rel=1e-10, abs=1e-12)


def test_streaming_with_lif_step_reproduces_lif():
    x = torch.randn(2, 5, 30)
    tau, thr = torch.rand(5), torch.rand(5) + 0.5
    u = torch.zeros(2, 5)
    streamed = []
    for t in range(30):
        s, u = lif_step(x[..., t], u, tau, thr, "soft")
        streamed.append(s)
    assert torch.equal(torch.stack(streamed, -1), lif(x, tau, thr, "soft", backend="loop"))


def test_output_shape_dtype_and_values():
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    s = lif(x, backend="loop")
    assert s.shape == x.shape and s.dtype == x.dtype
    assert set(s.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(x=torch.arange(4)), "x must be a floating-point"),
        (dict(x=[0.5, 1.0]), "x must be a floating-point"),
        (dict(x=torch.zeros(3, 0)), "x must have a non-empty time axis"),
        (dict(x=torch.tensor(1.0)), "x must have a non-empty time axis"),
        (dict(tau=1.5), r"tau must lie in \[0, 1\]"),
        (dict(tau=-0.1), r"tau must lie in \[0, 1\]"),
        (dict(tau=torch.tensor([0.5, float("nan"), 0.5])), r"tau must lie in \[0, 1\]"),
        (dict(tau="0.5"), "tau must be a float or a tensor"),
        (dict(threshold=torch.ones(4)), r"threshold of shape \(4,\) does not broadcast to x\[\.\.\., 0\]"),
        (dict(threshold=torch.ones(2, 1, 1)), "threshold of shape"),
        (dict(tau=torch.full((3, 3), 0.5)), "tau of shape"),
        (dict(reset="zero"), "reset must be one of hard, soft; got 'zero'"),
        (dict(surrogate="relu"), "surrogate must be one of triangle"),
        (dict(backend="cuda"), "backend must be one of auto, loop, fused, scan, sdn, triton; got 'cuda'"),
    ],
)
def test_bad_input_is_a_user_error_naming_the_argument(kwargs, pattern):
    args = dict(x=torch.zeros(2, 3, 5)) | kwargs
    with pytest.raises(UserError, match=pattern):
        lif(**args)


def test_lif_step_rejects_unknown_reset():
    with pytest.raises(UserError, match="reset"):
        lif_step(torch.zeros(3), torch.zeros(3), reset="none")


def test_backends_exported():
    assert set(LIF_BACKENDS) == {"auto", "loop", "fused", "scan", "sdn", "triton"}


# --- fused and scan against the loop -------------------------------------------------------------------


@dataclass
class Case:
    x: torch.Tensor
    tau: object  # float or tensor
    threshold: object
    reset: str
    surrogate: str
    upstream: torch.Tensor


@st.composite
def cases(draw, max_length=40):
    """Random shapes (L = 1, odd L, 0-3 leading axes), tau in [0, 1] including both ends, thresholds
    as a float, a 0-d tensor, per channel or per neuron, both resets, every surrogate, both dtypes."""
    lead = draw(st.lists(st.integers(1, 4), max_size=3))
    length = draw(st.one_of(st.just(1), st.integers(2, max_length)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = (torch.randn(*lead, length, generator=gen, dtype=dtype) * draw(st.sampled_from([0.5, 1.0, 3.0]))) + 0.4

    def parameter(low, high, ends=()):
        """A float (sometimes exactly an end of the range) or a tensor, per neuron or channel, with grad."""
        shapes = {"0-d": (), "channel": tuple(lead[-1:]), "neuron": tuple(lead)}
        kind = draw(st.sampled_from(["float", *shapes] if lead else ["float", "0-d"]))
        if kind == "float":
            if ends and draw(st.booleans()):
                return draw(st.sampled_from(ends))
            return low + (high - low) * torch.rand((), generator=gen).item()
        return (low + (high - low) * torch.rand(shapes[kind], generator=gen, dtype=dtype)).requires_grad_()

    return Case(
        x=x,
        tau=parameter(0.0, 1.0, ends=(0.0, 1.0)),
        threshold=parameter(0.3, 1.5),
        reset=draw(st.sampled_from(["hard", "soft"])),
        surrogate=draw(st.sampled_from(SURROGATES)),
        upstream=torch.randn(x.shape, generator=gen, dtype=dtype),
    )


def _run(case: Case, backend: str):
    """Spikes and the gradients reaching x, tau and threshold (None where they are floats)."""
    x = case.x.clone().requires_grad_()
    tau, threshold = (
        p.detach().clone().requires_grad_() if isinstance(p, torch.Tensor) else p for p in (case.tau, case.threshold)
    )
    s = lif(x, tau, threshold, case.reset, case.surrogate, backend)
    s.backward(case.upstream)
    return s.detach(), [x.grad] + [p.grad if isinstance(p, torch.Tensor) else None for p in (tau, threshold)]


def _assert_grads_close(got, want, dtype):
    # float64: both sides are exact up to summation order. float32: the loop rounds every autograd step to
    # float32 (the fused backward computes in float64), so allow float32 rounding relative to the scale.
    rtol = 1e-9 if dtype == torch.float64 else 1e-5
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            torch.testing.assert_close(g, w, rtol=rtol, atol=rtol * (1 + w.abs().max().item()))


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(case=cases())
def test_backend_matches_loop(backend, case):
    s_loop, g_loop = _run(case, "loop")
    s, g = _run(case, backend)
    assert s.dtype == case.x.dtype and s.shape == case.x.shape
    assert torch.equal(s, s_loop)  # bit-identical spikes
    _assert_grads_close(g, g_loop, case.x.dtype)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_backend_on_noncontiguous_input(backend):
    x = torch.randn(12, 3, 5, dtype=torch.float64).transpose(0, 2)  # (5, 3, 12), time axis strided
    threshold = torch.tensor([0.7, 1.0, 1.3], dtype=torch.float64)
    assert torch.equal(lif(x, 0.6, threshold, backend=backend), lif(x, 0.6, threshold, backend="loop"))


def test_fused_rejects_what_numba_cannot_run():
    with pytest.raises(UserError, match="backend 'fused' takes float32 or float64"):
        lif(torch.zeros(2, 3, dtype=torch.float16), backend="fused")
    meta = torch.empty(2, 3, device="meta")
    with pytest.raises(UserError, match="backend 'fused' runs on CPU tensors only"):
        lif_fused(meta, torch.tensor(0.5), torch.tensor(1.0), "hard", "triangle")


@pytest.mark.parametrize(
    "dtype, expected", [(torch.float32, "fused"), (torch.float64, "fused"), (torch.bfloat16, "scan")]
)
def test_auto_picks_the_fastest_exact_backend(monkeypatch, dtype, expected):
    called = []
    monkeypatch.setattr("spikessm.neurons.fused.lif_fused", lambda *args: called.append("fused"))
    monkeypatch.setattr("spikessm.neurons.scan.lif_scan", lambda *args: called.append("scan"))
    lif(torch.zeros(2, 3, dtype=dtype))
    assert called == [expected]


def test_sdn_backend_receives_tau_as_given_and_the_threshold_in_xs_dtype(monkeypatch):
    received = []
    monkeypatch.setattr("spikessm.neurons.sdn.sdn_lif", lambda *args: received.append(args) or "spikes")
    x = torch.zeros(2, 3)
    assert lif(x, 0.125, torch.full((2,), 0.9, dtype=torch.float64), "hard", "atan", "sdn") == "spikes"
    (got_x, tau, threshold, reset, surrogate), = received
    assert got_x is x and tau == 0.125 and (reset, surrogate) == ("hard", "atan")
    assert threshold.dtype == x.dtype and torch.equal(threshold, torch.full((2,), 0.9))


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("tau", [0.125, 0.5, 0.9])
def test_float32_spikes_agree_on_long_sequences(reset, tau):
    # The contract lets scan differ in 1e-5 of float32 spikes; this scan runs lif_step's own arithmetic
    # on chunks, so it agrees exactly, like fused. Long sequences exercise many chunks and rounds.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 32, 1024, generator=g) + 0.3
    threshold = 0.8 + 0.4 * torch.rand(32, generator=g)
    s_loop = lif(x, tau, threshold, reset, backend="loop")
    assert 0.05 < s_loop.mean() < 0.6
    for backend in EXACT_BACKENDS:
        assert torch.equal(lif(x, tau, threshold, reset, backend=backend), s_loop), backend


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_gradients_agree_on_long_sequences(reset):
    case = Case(
        x=torch.randn(3, 4, 700, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.5,
        tau=torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=torch.float64),
        threshold=torch.tensor([0.7, 1.0, 1.2, 1.5], dtype=torch.float64),
        reset=reset,
        surrogate="atan",
        upstream=torch.randn(3, 4, 700, generator=torch.Generator().manual_seed(4), dtype=torch.float64),
    )
    s_loop, g_loop = _run(case, "loop")
    for backend in EXACT_BACKENDS:
        s, g = _run(case, backend)
        assert torch.equal(s, s_loop)
        _assert_grads_close(g, g_loop, torch.float64)


def test_scan_converges_without_leak():
    # tau = 1, soft reset: a pure integrator, whose chunk carries never decay; the fixed point needs
    # a round per chunk here and must still land on the loop's answer.
    x = torch.full((2, 600), 0.013, dtype=torch.float64)
    s = lif(x, 1.0, 1.0, "soft", backend="scan")
    assert torch.equal(s, lif(x, 1.0, 1.0, "soft", backend="loop"))
    assert s.sum() == 2 * 7  # 600 · 0.013 = 7.8 crossings of 1 per neuron


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_non_finite_inputs_behave_as_in_the_loop(reset):
    x = torch.tensor([[0.5, 2.0, float("nan"), 3.0, 3.0], [2.0, float("inf"), 0.5, 2.0, 2.0], [0.7] * 5])
    s_loop = lif(x, 0.5, 1.0, reset, backend="loop")
    for backend in EXACT_BACKENDS:
        assert torch.equal(lif(x, 0.5, 1.0, reset, backend=backend), s_loop), backend


def test_float32_is_computed_in_float32():
    # Inputs whose membrane lands within rounding of the threshold: float32 and float64 arithmetic then
    # disagree on some spikes, and the exact backends must side with the float32 loop.
    g = torch.Generator().manual_seed(11)
    a = 0.2 + 0.7 * torch.rand(100_000, generator=g)
    tau = 0.1  # not a binary fraction, so tau * u rounds
    ulps = torch.randint(-3, 4, a.shape, generator=g) * 2.0**-24
    x = torch.stack([a, (1 - tau * a) * (1 + ulps)], dim=-1)  # v_1 = tau a + x_1 ≈ 1 = threshold
    s32 = lif(x, tau, 1.0, backend="loop")
    assert (s32 != lif(x.double(), tau, 1.0, backend="loop").float()).any()
    for backend in EXACT_BACKENDS:
        assert torch.equal(lif(x, tau, 1.0, backend=backend), s32), backend
