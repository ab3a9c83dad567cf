"""Blocks: S4D token mixing -> activation -> feature mixing, one file per paper's block; the LIF neuron module."""
from spikessm.blocks.base import GELU, GLU, Activation, SSMBlock
from spikessm.blocks.binary import BinaryS4DBlock, BinarySpike
from spikessm.blocks.gsu import GSU, GSUBlock
from spikessm.blocks.lif import LIF
from spikessm.blocks.s4d import S4DBlock
from spikessm.blocks.spiking import SpikingS4DBlock

__all__ = ["GELU", "GLU", "GSU", "LIF", "Activation", "BinaryS4DBlock", "BinarySpike", "GSUBlock", "S4DBlock",
           "SSMBlock", "SpikingS4DBlock"]
