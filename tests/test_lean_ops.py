"""The blocks' memory-lean operations against plain autograd through the same formulas."""
import pytest
import torch
import torch.nn.functional as F

from spikessm.blocks.lean_ops import Dropout, divide_by_threshold, glu_conv


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


def test_glu_conv_under_bfloat16_autocast_is_as_accurate_as_plain_autocast():
    """Both compute in bfloat16 (8 significant bits) and round in different places, so each is measured
    against a float64 computation: ours must be no worse than autograd's own bfloat16 result."""
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 16, 33), torch.randn(32, 16, 1), torch.randn(32)
    g = torch.randn(2, 16, 33)

    def run(fn, dtype=None):
        inputs = [t.to(dtype or t.dtype).requires_grad_() for t in (x, w, b)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is None):
            out = fn(*inputs)
        return [out.double(), *(t.double() for t in torch.autograd.grad(out, inputs, g.to(out.dtype)))]

    plain = lambda x, w, b: F.glu(F.conv1d(x, w, b), dim=-2)  # noqa: E731
    truth, ours, theirs = run(plain, torch.float64), run(glu_conv), run(plain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert glu_conv(x, w, b).dtype == torch.bfloat16
    for t, o, r in zip(truth, ours, theirs):
        assert (o - t).abs().max() <= max(2 * (r - t).abs().max(), 0.01 * t.abs().max())


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


def test_dropout_scales_kept_elements_keeps_a_boolean_mask_and_routes_gradients_through_it():
    torch.manual_seed(0)
    drop = Dropout(0.25)
    x = torch.randn(4, 8, 500, requires_grad=True)
    out, saved = saved_tensors(drop, x)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.75)
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    assert [t.dtype for t in saved] == [torch.bool]
    g = torch.randn_like(x)
    (grad,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(grad, g * kept / 0.75)
    drop.eval()
    assert drop(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
