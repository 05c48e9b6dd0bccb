"""Running a one-step network over a time-major sequence, as acting did step by step.

The learner sees a whole segment ``[T, B, ...]`` where acting saw one step ``[B, ...]`` at a
time. :func:`scan_apply` is the step-by-step replay (a ``lax.scan`` over time, so gradients flow
through the carry: truncated BPTT at segment boundaries, adept's semantics) that any network
called as ``network(carry, obs, first, train=True)`` supports; :func:`mean_over_steps` turns the
per-step writes of the non-trainable collections into the one update a learner step stores.
A network that can do better (``ModularNetwork`` runs its stateless trunks on all steps at once)
defines its own ``unroll`` on top of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.types import Carry, Observation, Params

STATE_COLLECTIONS = ("batch_stats",)  # the non-trainable collections a learner's call writes


def scan_apply(
    network: nn.Module,
    params: Params,
    carry: Carry,
    obs: Observation | jax.Array,
    first: jax.Array,
    *,
    mutable: Sequence[str] = STATE_COLLECTIONS,
    **kwargs: Any,
) -> tuple[Any, Params]:
    """``network.apply`` on each step of a time-major sequence, the carry passed along.

    Step ``t`` computes ``network.apply(params, carry, obs[t], first[t], train=True,
    mutable=mutable, **kwargs)`` with the carry step ``t - 1`` returned: what acting computed
    step by step with the same ``params``. Every step sees ``params`` unchanged, batch-norm
    running statistics included; what each step would write is returned, stacked, for the
    caller to reduce (:func:`mean_over_steps`).

    Args:
        network: a module called as ``network(carry, obs, first, *, train, **kwargs)`` that
            returns ``(carry, output)``.
        params: flax variables.
        carry: the state before ``obs[0]``, leading axis [B] (``()`` if none).
        obs: name -> [T, B, ...] observations (or [T, B, F] features, whatever the step takes).
        first: [T, B] bool episode starts, where the network resets its carry.
        mutable: the collections each step may write (default: batch-norm statistics).
        **kwargs: more keyword arguments of every step's call (e.g. ``part="core"``).

    Returns:
        ``(outputs, updates)``: the step outputs stacked over time (leading axis [T]) and each
        step's written collections, leading axis [T] on every leaf (``{}`` if none).
    """

    def step(carry: Carry, inputs: tuple[Any, jax.Array]) -> tuple[Carry, tuple[Any, Params]]:
        (carry, output), updates = network.apply(
            params, carry, *inputs, train=True, mutable=list(mutable), **kwargs
        )
        return carry, (output, updates)

    _, (outputs, updates) = jax.lax.scan(step, carry, (obs, first))
    return outputs, updates


def mean_over_steps(updates: Params) -> Params:
    """The one update a learner step stores from what each of ``T`` steps would write.

    For batch norm: one moving-average step towards the mean of the steps' batch statistics
    (adept moved them once per acting step; one step per update keeps them from shifting within
    the segment the loss differentiates).

    Args:
        updates: collections whose every leaf has a leading [T] axis, as :func:`scan_apply`
            returns them.

    Returns:
        The same tree, each leaf averaged over its leading axis.
    """
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), updates)
