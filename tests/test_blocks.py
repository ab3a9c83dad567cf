"""The papers' blocks: shapes, gradients, firing at initialisation, streaming = parallel."""
import pytest
import torch

from spikessm.blocks.binary import BinaryS4DBlock, BinarySpike
from spikessm.blocks.gsu import GSU, GSUBlock, ternary_weights
from spikessm.blocks.s4d import S4DBlock
from spikessm.blocks.spiking import SpikingS4DBlock
from spikessm.errors import UserError
from spikessm.metrics.firing import FiringRecorder

H = 8
BLOCKS = {
    "s4d": lambda: S4DBlock(H, d_state=8),
    "binary-s4d": lambda: BinaryS4DBlock(H, d_state=8),
    "binary-s4d-fast-sigmoid": lambda: BinaryS4DBlock(H, spike="fast_sigmoid", d_state=8),
    "binary-s4d-bernoulli": lambda: BinaryS4DBlock(H, spike="bernoulli", d_state=8),
    "binary-s4d-gsu": lambda: GSUBlock(H, d_state=8),
    "s4d-gsu": lambda: GSUBlock(H, spike=None, d_state=8),
    "spikingssm": lambda: SpikingS4DBlock(H, d_state=8),
    "spikingssm-soft-shared": lambda: SpikingS4DBlock(H, reset="soft", shared_threshold=True, d_state=8),
}
SPIKING = [name for name in BLOCKS if name != "s4d"]
DETERMINISTIC = [name for name in BLOCKS if name != "binary-s4d-bernoulli"]


def stream(block, u):
    state, ys = block.initial_state(u.shape[0], u), []
    discrete = block.ssm.kernel.discrete()
    for t in range(u.shape[-1]):
        y, state = block.step(u[..., t], state, discrete)
        ys.append(y)
    return torch.stack(ys, -1)


@pytest.mark.parametrize("name", BLOCKS)
def test_shape_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    block = BLOCKS[name]()
    u = torch.randn(3, H, 50, requires_grad=True)
    y = block(u)
    assert y.shape == u.shape
    (y ** 2).sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
    for pname, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"


@pytest.mark.parametrize("name", SPIKING)
def test_firing_rate_strictly_between_0_and_1_at_init(name):
    torch.manual_seed(0)
    block = BLOCKS[name]()
    with FiringRecorder(block) as rec:
        block(torch.randn(4, H, 100))
    assert rec.rates(), "no spiking layer recorded"
    for layer, rate in rec.rates().items():
        assert 0 < rate < 1, (layer, rate)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_streaming_equals_parallel_float64_exact(name):
    torch.manual_seed(0)
    block = BLOCKS[name]().double().eval()
    u = torch.randn(2, H, 256, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(stream(block, u), block(u), rtol=1e-9, atol=1e-9)


def test_streaming_spikingssm_float32_within_tolerance():
    torch.manual_seed(0)
    block = SpikingS4DBlock(H, d_state=8).eval()
    u = torch.randn(4, H, 256)
    with torch.no_grad():
        a, b = stream(block, u), block(u)
    # A spike may flip where the membrane lands within float32 rounding of the threshold.
    close = torch.isclose(a, b, rtol=1e-4, atol=1e-4)
    assert close.float().mean() > 0.995


def test_spiking_block_emits_the_lif_of_the_scaled_ssm_output():
    """Independent reference: the LIF recurrence written out on the S4D output, threshold exp(ln_vth)."""
    torch.manual_seed(0)
    block = SpikingS4DBlock(H, d_state=8).double()
    with torch.no_grad():
        block.activation.ln_vth.uniform_(-0.5, 0.5)
    u = torch.randn(2, H, 64, dtype=torch.float64)
    spikes = {}
    block.activation.register_forward_hook(lambda m, i, o: spikes.setdefault("s", o))
    block(u)
    y = block.ssm(u) / torch.exp(block.activation.ln_vth)
    mem = torch.zeros(2, H, dtype=torch.float64)
    for t in range(64):
        v = 0.125 * mem + y[..., t]
        s = (v >= 1).double()
        assert torch.equal(spikes["s"][..., t], s)
        mem = v * (1 - s)


def test_binary_spike_is_heaviside_at_zero():
    y = torch.tensor([[[-1.0, -1e-6, 0.0, 0.3]]])
    assert BinarySpike("atan")(y).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    with pytest.raises(UserError, match="spike must be one of"):
        BinarySpike("nope")


def test_gsu_equals_its_formula():
    torch.manual_seed(0)
    gsu = GSU(4, threshold=0.15).double()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    out = gsu(x)
    w2 = gsu.w2.weight
    delta = 0.7 * w2.abs().mean(1, keepdim=True)
    ter_w2 = torch.sign(w2) * (w2.abs() >= delta)
    alpha = (w2.abs() * (w2.abs() >= delta)).sum(1) / (w2.abs() >= delta).sum(1)
    for b in range(2):
        for t in range(5):
            xt = x[b, :, t]
            ter_x = torch.sign(xt) * (xt.abs() >= 0.15 * xt.abs().max())
            expected = (gsu.w1.weight @ ter_x + gsu.w1.bias) * (alpha * (ter_w2 @ xt) + gsu.w2.bias)
            torch.testing.assert_close(out[b, :, t], expected)
    assert set(ternary_weights(w2)[0].unique().tolist()) <= {-1.0, 0.0, 1.0}
