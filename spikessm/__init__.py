"""spikessm: spiking state space models (S4D, Binary S4D, GSU, SpikingSSM) for long sequences."""

__version__ = "0.1.0"
