"""Binary S4D (Stan & Rhodes, Sci. Rep. 2024; arXiv 2401.00955): the GELU after S4D becomes a spike.

    y_t = (K * u)_t + D u_t     s_t = H(y_t) in {0, 1}     out_t = GLU(W s_t + b)

The feature-mixing map then sees binary input, so it needs accumulates only. The spike is a
Heaviside at 0 with a surrogate gradient (arctan by default, the paper's main choice; fast sigmoid is
its ablation, more than 10 points worse on sCIFAR), or the stochastic Bernoulli spike of the
authors' arXiv-era code (p = sigmoid(y), s ~ Bernoulli(p)).
"""
from spikessm.blocks.base import GLU, Activation, SSMBlock
from spikessm.errors import UserError
from spikessm.neurons import SURROGATES, bernoulli_spike, spike

SPIKES = SURROGATES + ("bernoulli",)


class BinarySpike(Activation):
    """s = H(y) with a surrogate gradient, or s ~ Bernoulli(sigmoid(y)). Stateless; ``(B, H, L)``."""

    spiking = True

    def __init__(self, kind: str = "atan"):
        super().__init__()
        if kind not in SPIKES:
            raise UserError(f"unknown spike {kind!r}; choose one of: {', '.join(SPIKES)}")
        self.kind = kind

    def forward(self, y):
        return bernoulli_spike(y) if self.kind == "bernoulli" else spike(y, self.kind)

    def extra_repr(self):
        return f"kind={self.kind}"


def binary_s4d_block(d_model: int, dropout: float = 0.0, spike: str = "atan", **ssm_options) -> SSMBlock:
    return SSMBlock(d_model, BinarySpike(spike), GLU(d_model), dropout, **ssm_options)
