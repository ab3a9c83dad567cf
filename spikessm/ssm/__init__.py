"""S4D: the diagonal state space layer shared by every model (kernel, FFT convolution, recurrence)."""
from spikessm.ssm.conv import bidirectional_kernel, fft_conv
from spikessm.ssm.kernel import INITS, S4DKernel
from spikessm.ssm.s4d import S4D

__all__ = ["S4D", "S4DKernel", "INITS", "fft_conv", "bidirectional_kernel"]
