"""Command-line value types shared by ``spikessm`` and its subcommand modules (argparse ``type=``).

A value they refuse is an argparse usage error: one line naming the option, exit 2.
"""
from __future__ import annotations

import argparse
import math


def positive_float(text: str) -> float:
    """A finite number > 0 (``nan``, ``inf``, 0 and negatives are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


SEED_LIMIT = 2 ** 32


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32), the range numpy accepts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value
