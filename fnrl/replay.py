"""A uniform experience-replay buffer as a plain pytree with pure ``init``/``add``/``sample``.

Experience replay (Mnih et al., 2015, "Human-level control through deep reinforcement learning")
keeps the last ``capacity`` items in a ring and trains on minibatches drawn uniformly from them.
The layout follows flashbax's item buffer: the state is a ``ReplayState`` NamedTuple of arrays
with static shapes, so it goes through ``jax.jit``, ``lax.scan``, donation and flax
serialization like the rest of a learner's state, and the functions are built by a factory in
optax's pattern. An item is any pytree of arrays (for example a transition ``obs, action,
reward, discount, next_obs``); each leaf keeps its dtype, so uint8 images stay uint8.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ReplayBuffer", "ReplayState", "can_sample", "make_uniform_replay"]


class ReplayState(NamedTuple):
    """The contents of a replay buffer, a pytree of device arrays."""

    items: Any  # pytree of [capacity, ...] arrays, one leaf per leaf of an item, its dtype kept
    position: jax.Array  # [] int32: the slot the next item goes to
    size: jax.Array  # [] int32: filled slots, at most capacity


class ReplayBuffer(NamedTuple):
    """The pure functions of a replay buffer, built by ``make_uniform_replay``.

    Attributes:
      init: ``init(example_item) -> ReplayState``, empty, from one item without a leading axis.
      add: ``add(state, items) -> ReplayState``, writing ``N`` items whose leaves are ``[N, ...]``.
      sample: ``sample(state, key) -> items`` whose leaves are ``[batch_size, ...]``.
    """

    init: Callable[[Any], ReplayState]
    add: Callable[[ReplayState, Any], ReplayState]
    sample: Callable[[ReplayState, jax.Array], Any]


def make_uniform_replay(capacity: int, batch_size: int) -> ReplayBuffer:
    """Builds a ring buffer of ``capacity`` items sampled uniformly with replacement.

    See Mnih et al. (2015), "Human-level control through deep reinforcement learning", and
    flashbax's item buffer (``flashbax.make_item_buffer``), whose layout this follows.

    Args:
      capacity: the number of items kept; adding more overwrites the oldest. At least 1.
      batch_size: the number of items each ``sample`` returns. At least 1.

    Returns:
      A ``ReplayBuffer`` of pure, jittable ``init``, ``add`` and ``sample`` functions.

    Raises:
      ValueError: if ``capacity`` or ``batch_size`` is below 1.
    """
    if capacity < 1:
        raise ValueError(f"make_uniform_replay needs capacity >= 1 items, got {capacity}.")
    if batch_size < 1:
        raise ValueError(f"make_uniform_replay needs batch_size >= 1 items, got {batch_size}.")

    def init(example_item: Any) -> ReplayState:
        """Returns an empty buffer: zeros ``[capacity, ...]`` per leaf of ``example_item``.

        Args:
          example_item: one item, a pytree of arrays without the leading ``N`` axis; only
            its structure, shapes and dtypes are used.

        Returns:
          A ``ReplayState`` with ``position`` and ``size`` 0.

        Raises:
          ValueError: if ``example_item`` has no array leaves.
        """
        leaves = jax.tree.leaves(example_item)
        if not leaves:
            raise ValueError("make_uniform_replay's init needs an item with at least one array.")
        items = jax.tree.map(
            lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example_item
        )
        return ReplayState(items, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def add(state: ReplayState, items: Any) -> ReplayState:
        """Writes ``N`` items in order from ``state.position``, wrapping round the ring.

        When ``N > capacity`` only the last ``capacity`` items stay, still in order.

        Args:
          state: the buffer.
          items: a pytree with the structure of the buffer's items whose leaves are
            ``[N, ...]``, the trailing shape and the dtype of the buffer's leaves.

        Returns:
          The buffer with the items written, ``position`` advanced by ``N`` modulo ``capacity``
          and ``size`` increased by ``N`` up to ``capacity``.

        Raises:
          ValueError: if the structure, trailing shapes, dtypes or leading sizes do not match.
        """
        if jax.tree.structure(items) != jax.tree.structure(state.items):
            raise ValueError(
                "add needs items with the structure given to init: got "
                f"{jax.tree.structure(items)}, want {jax.tree.structure(state.items)}."
            )
        items = jax.tree.map(jnp.asarray, items)
        n = _check_leaves(jax.tree.leaves(items), jax.tree.leaves(state.items))
        keep = min(n, capacity)  # earlier items would be overwritten within this same add
        slots = (state.position + (n - keep) + jnp.arange(keep, dtype=jnp.int32)) % capacity
        stored = jax.tree.map(
            lambda buf, x: buf.at[slots].set(x[n - keep :], unique_indices=True),
            state.items,
            items,
        )
        return ReplayState(
            stored,
            (state.position + n) % capacity,
            jnp.minimum(state.size + n, capacity).astype(jnp.int32),
        )

    def sample(state: ReplayState, key: jax.Array) -> Any:
        """Draws ``batch_size`` items uniformly, with replacement, from the filled slots.

        An empty buffer returns ``batch_size`` copies of slot 0, which ``init`` filled with
        zeros: never an out-of-range index or a NaN. Check ``can_sample`` before training on it.

        Args:
          state: the buffer.
          key: a PRNG key, consumed.

        Returns:
          A pytree with the structure of the items whose leaves are ``[batch_size, ...]``.
        """
        slots = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
        return jax.tree.map(lambda buf: buf[slots], state.items)

    return ReplayBuffer(init, add, sample)


def can_sample(state: ReplayState, min_size: int = 1) -> jax.Array:
    """Whether the buffer holds at least ``min_size`` items, e.g. DQN's learning-starts.

    Args:
      state: the buffer.
      min_size: the fewest items to train on, between 1 and the buffer's capacity.

    Returns:
      A ``[]`` bool, traced under ``jit``.

    Raises:
      ValueError: if ``min_size`` is below 1 or above the capacity, so it could never hold.
    """
    capacity = jax.tree.leaves(state.items)[0].shape[0]
    if not 1 <= min_size <= capacity:
        raise ValueError(
            f"can_sample needs 1 <= min_size <= capacity ({capacity}), got {min_size}: "
            "lower min_size or build the buffer with a larger capacity."
        )
    return state.size >= min_size


def _check_leaves(leaves: list[jax.Array], stored: list[jax.Array]) -> int:
    """Returns the ``N`` shared by ``[N, ...]`` leaves matching ``[capacity, ...]`` stored ones."""
    sizes = {x.shape[0] if x.ndim else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"add needs every leaf to be [N, ...] with one N, got sizes {sizes}.")
    for x, buf in zip(leaves, stored, strict=True):
        if x.shape[1:] != buf.shape[1:] or x.dtype != buf.dtype:
            want = ", ".join(["N", *map(str, buf.shape[1:])])
            raise ValueError(
                f"add got a leaf {x.dtype}{list(x.shape)}, want {buf.dtype}[{want}]: give it a "
                "leading axis of N items and the dtype of the example item given to init."
            )
    return sizes.pop()
