"""The blocks' memory-lean operations against plain autograd through the same formulas."""
import pytest
import torch
import torch.nn.functional as F

from spikessm.blocks.lean_ops import divide_by_threshold, glu_conv


def saved_tensors(fn, *args):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = fn(*args)
    return out, saved


@pytest.mark.parametrize("spikes", [False, True])
def test_glu_conv_equals_autograd(spikes):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 17, dtype=torch.float64)
    if spikes:
        x = (x > 0.3).to(torch.float64)
    w, b = torch.randn(8, 4, 1, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    g = torch.randn(3, 4, 17, dtype=torch.float64)
    results = []
    for fn in (lambda x, w, b: glu_conv(x, w, b, spikes), lambda x, w, b: F.glu(F.conv1d(x, w, b), dim=-2)):
        inputs = [t.clone().requires_grad_() for t in (x, w, b)]
        out = fn(*inputs)
        results.append((out, torch.autograd.grad(out, inputs, g)))
    (out, grads), (ref, ref_grads) = results
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_glu_conv_keeps_spikes_as_bytes_and_no_preactivation():
    x = (torch.rand(2, 8, 64) > 0.5).float().requires_grad_()
    w = torch.randn(16, 8, 1, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    _, saved = saved_tensors(glu_conv, x, w, b, True)
    assert [t.dtype for t in saved if t.shape == x.shape] == [torch.int8]
    assert not any(t.shape[-1] == 64 and t.shape[1] == 16 for t in saved if t.dim() == 3)
    _, plain = saved_tensors(lambda x, w, b: F.glu(F.conv1d(x, w, b), dim=-2), x, w, b)
    assert any(t.shape == (2, 16, 64) for t in plain)  # what the lean version avoids


def test_glu_conv_under_bfloat16_autocast_matches_plain_autocast():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 4, 9), torch.randn(8, 4, 1), torch.randn(8)
    grads = []
    for fn in (glu_conv, lambda x, w, b: F.glu(F.conv1d(x, w, b), dim=-2)):
        inputs = [t.clone().requires_grad_() for t in (x, w, b)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(*inputs)
        grads.append((out, torch.autograd.grad(out.float().sum(), inputs)))
    assert grads[0][0].dtype == grads[1][0].dtype == torch.bfloat16
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, r in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("shape", [(4, 1), (1,)])
def test_divide_by_threshold_equals_autograd_and_keeps_its_output(shape):
    torch.manual_seed(0)
    y = torch.randn(3, 4, 11, dtype=torch.float64, requires_grad=True)
    ln = (0.3 * torch.randn(shape, dtype=torch.float64)).requires_grad_()
    g = torch.randn(3, 4, 11, dtype=torch.float64)
    out, saved = saved_tensors(divide_by_threshold, y, ln)
    ref = y / torch.exp(ln)
    assert torch.equal(out, ref)  # same rounding as the plain division
    assert not any(t is y or t.data_ptr() == y.data_ptr() for t in saved)
    for a, r in zip(torch.autograd.grad(out, (y, ln), g), torch.autograd.grad(ref, (y, ln), g)):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
