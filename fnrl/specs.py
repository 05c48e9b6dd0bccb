"""Observation and action specs.

Observations and actions are always dicts keyed by name (adept's "action dictionary"), so a
single-screen Atari game and a many-headed StarCraft II interface go through the same code.
Image observations are channels-last: ``[H, W, C]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ArraySpec(NamedTuple):
    """The shape and dtype of one observation entry for a single environment."""

    shape: tuple[int, ...]  # per-env shape, channels-last for images
    dtype: np.dtype


class DiscreteSpec(NamedTuple):
    """A discrete action with ``num_values`` choices, ``0 .. num_values - 1``."""

    num_values: int


class EnvSpec(NamedTuple):
    """What an environment observes and what it accepts, per environment (no batch axis)."""

    observations: dict[str, ArraySpec]
    actions: dict[str, DiscreteSpec]


def is_image(spec: ArraySpec) -> bool:
    """True for rank-3 observations, which go through a vision trunk (adept's rank routing)."""
    return len(spec.shape) == 3


def is_vector(spec: ArraySpec) -> bool:
    """True for rank-1 observations, which go through a discrete / vector trunk."""
    return len(spec.shape) == 1
