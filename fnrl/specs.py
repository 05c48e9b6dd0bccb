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
    """A discrete action with ``num_values`` choices, ``0 .. num_values - 1``.

    Two optional fields make a many-headed action (StarCraft II's function and its arguments)
    out of discrete heads, for any env that declares them:

    * ``mask``: the observation key of a ``[num_values]`` bool array, per step, set where a value
      may be chosen; the policy gives the others probability 0 (logits of ``-inf``), so they are
      never sampled nor chosen greedily.
    * ``used_when``: ``(key, used)``: this action matters only when the action ``key`` (another
      discrete head) takes a value ``v`` with ``used[v]`` set. Where it does not, its
      log-probability and entropy count as 0 in every loss: the env ignored it, so the policy
      is not credited or blamed for it.
    """

    num_values: int
    mask: str | None = None
    used_when: tuple[str, tuple[bool, ...]] | None = None

    @property
    def shape(self) -> tuple[()]:
        """The per-env shape of one action: a scalar."""
        return ()


class BoxSpec(NamedTuple):
    """A continuous action: a float32 vector of ``shape``, each entry in ``[low, high]``.

    The bounds are tuples of floats (one per entry, ``±inf`` where unbounded) so that specs
    stay hashable and JSON-friendly. A policy may propose actions outside them: the env
    adapter clips on the way to the env (:class:`fnrl.envs.base.SpaceConverter`).
    """

    shape: tuple[int]  # (D,): rank 1
    low: tuple[float, ...]
    high: tuple[float, ...]


ActionSpec = DiscreteSpec | BoxSpec


class EnvSpec(NamedTuple):
    """What an environment observes and what it accepts, per environment (no batch axis)."""

    observations: dict[str, ArraySpec]
    actions: dict[str, ActionSpec]


def is_continuous(spec: ActionSpec) -> bool:
    """True for a Box action, which a Gaussian head acts on; False for a discrete one."""
    return isinstance(spec, BoxSpec)


def is_image(spec: ArraySpec) -> bool:
    """True for rank-3 observations, which go through a vision trunk (adept's rank routing)."""
    return len(spec.shape) == 3


def is_vector(spec: ArraySpec) -> bool:
    """True for rank-1 observations, which go through a discrete / vector trunk."""
    return len(spec.shape) == 1
