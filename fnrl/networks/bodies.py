"""Bodies: the layer between the concatenated trunk features and the heads.

Every body is a ``flax.linen`` module with the fields ``hidden_size: int`` and
``normalize: bool``, the class attribute ``recurrent: bool`` (adept stacks 4 frames for
feed-forward bodies and 1 for recurrent ones), the classmethod
``initial_carry(batch_size, hidden_size) -> Carry`` and
``__call__(carry, x, *, train) -> (carry, features)`` for one time step of ``B`` envs.
Built-in bodies may also declare ``normalization`` and ``nb_head``; ``ModularNetwork`` passes each
body only the fields it declares. The episode-start reset of the carry, to the body's
``initial_carry``, happens before the body is called (``reset_carry``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.networks._layers import Normalized, torch_dense, torch_layer_norm
from fnrl.networks.modules.memory import RMCCell, initial_memory

Carry = Any  # a pytree of [B, ...] arrays; () for feed-forward bodies


class LSTMCarry(NamedTuple):
    """The recurrent state of an LSTM body (adept's ``internals`` ``cx`` / ``hx``)."""

    c: jax.Array  # [B, hidden_size] float32: cell state (layer-normalized by LSTMCellLayerNorm)
    h: jax.Array  # [B, hidden_size] float32: output


def reset_carry(carry: Carry, first: jax.typing.ArrayLike, initial: Carry | None = None) -> Carry:
    """Resets ``carry`` to its initial value in the rows where ``first`` is set, under ``jit``.

    adept zeroes an env's internals after a terminal step (parity item 3); fnrl marks the first
    step of each episode instead and resets before processing it, which is the same state.

    Args:
        carry: pytree of arrays with a leading ``[B]`` axis (``()`` passes through).
        first: ``[B]`` bool, the observation starts an episode.
        initial: the state to reset to, the same structure and shapes as ``carry`` (a body's
            ``initial_carry(B, hidden_size)``); ``None`` resets to zeros.

    Returns:
        ``carry`` with ``initial`` (or zeros) in the rows where ``first`` is True.
    """
    first = jnp.asarray(first, dtype=jnp.bool_)
    chex.assert_rank(first, 1)
    if initial is None:
        initial = jax.tree.map(jnp.zeros_like, carry)

    def reset(leaf: jax.Array, start: jax.Array) -> jax.Array:
        chex.assert_axis_dimension(leaf, 0, first.shape[0])
        chex.assert_equal_shape([leaf, start])
        mask = first.reshape(first.shape + (1,) * (leaf.ndim - 1))
        return jnp.where(mask, start.astype(leaf.dtype), leaf)

    return jax.tree.map(reset, carry, initial)


class LSTMCell(nn.Module):
    """``torch.nn.LSTMCell`` as adept's LSTM body uses it without ``--normalize``.

    ``gates = x W_ih + b_ih + h W_hh + b_hh`` split in torch's order ``[i, f, g, o]``;
    ``c' = σ(f) c + σ(i) tanh(g)``, ``h' = σ(o) tanh(c')``. Weights ``U(±1/sqrt(hidden))``
    (torch's default), both biases zero (adept fills ``bias_ih`` and ``bias_hh`` with 0).
    Params: ``ih`` and ``hh`` Dense, kernels ``[in, 4H]`` / ``[H, 4H]``, biases ``[4H]``.
    Source: adept ``adept/networks/bodies.py::LSTMBody``.
    """

    hidden_size: int

    @nn.compact
    def __call__(self, carry: LSTMCarry, x: jax.Array) -> LSTMCarry:
        """One step: ``carry`` ``(c, h)`` each ``[B, H]``, ``x`` ``[B, D]`` → new ``(c, h)``."""
        size = self.hidden_size
        bound = 1.0 / math.sqrt(size)
        ih = torch_dense(4 * size, x.shape[-1], weight_bound=bound, zero_bias=True, name="ih")
        hh = torch_dense(4 * size, size, weight_bound=bound, zero_bias=True, name="hh")
        gates = ih(x) + hh(carry.h)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = nn.sigmoid(f) * carry.c + nn.sigmoid(i) * jnp.tanh(g)
        h = nn.sigmoid(o) * jnp.tanh(c)
        return LSTMCarry(c=c, h=h)


class LSTMCellLayerNorm(nn.Module):
    """adept's ``LSTMCellLayerNorm``: an LSTM cell that layer-normalizes its cell state.

    ``preact = x W_ih + b_ih + h W_hh + b_hh``; gate order ``[i, f, o | g]``: sigmoid on the first
    ``3H`` (``i, f, o``), tanh on the last ``H`` (``g``); ``c' = LN(f c + i g)`` with LayerNorm
    eps 1e-5, and the *normalized* ``c'`` is carried forward; ``h' = o tanh(c')``.
    ``ih`` / ``hh`` are ``torch.nn.Linear`` with torch's default weights ``U(±1/sqrt(fan_in))``
    and zero biases (adept's ``forget_bias=0``). Params: ``ih``, ``hh`` Dense and ``ln_cell``
    LayerNorm (``scale``, ``bias`` ``[H]``).
    Source: adept ``adept/modules/sequence.py::LSTMCellLayerNorm`` (2018), after
    seba-1511/lstms.pth.
    """

    hidden_size: int

    @nn.compact
    def __call__(self, carry: LSTMCarry, x: jax.Array) -> LSTMCarry:
        """One step: ``carry`` ``(c, h)`` each ``[B, H]``, ``x`` ``[B, D]`` → new ``(c, h)``."""
        size = self.hidden_size
        ih = torch_dense(4 * size, x.shape[-1], zero_bias=True, name="ih")
        hh = torch_dense(4 * size, size, zero_bias=True, name="hh")
        preact = ih(x) + hh(carry.h)
        i, f, o = jnp.split(nn.sigmoid(preact[:, : 3 * size]), 3, axis=-1)
        g = jnp.tanh(preact[:, 3 * size :])
        c = torch_layer_norm(name="ln_cell")(f * carry.c + i * g)
        h = o * jnp.tanh(c)
        return LSTMCarry(c=c, h=h)


class IdentityBody(nn.Module):
    """No body: the concatenated trunk features go straight to the heads. Feed-forward."""

    hidden_size: int = 512  # unused; every body takes the same fields
    normalize: bool = True  # unused
    recurrent: ClassVar[bool] = False

    def __call__(self, carry: Carry, x: jax.Array, *, train: bool) -> tuple[Carry, jax.Array]:
        """Returns ``(carry, x)`` unchanged: ``x`` ``[B, F]`` float32."""
        del train
        return carry, x

    @classmethod
    def initial_carry(cls, batch_size: int, hidden_size: int) -> Carry:
        """``()``: a feed-forward body has no state."""
        del batch_size, hidden_size
        return ()


class LinearBody(Normalized):
    """adept's ``LinearBody``: ``Dense(hidden_size) → (BatchNorm) → ReLU``. Feed-forward.

    With ``normalize`` the Dense has no bias and a BatchNorm follows it. With the ``Nature`` trunk
    this completes the Nature DQN torso (3136 → 512).
    Source: adept ``adept/networks/bodies.py::LinearBody``.
    """

    hidden_size: int = 512
    recurrent: ClassVar[bool] = False
    width: ClassVar[int | None] = None  # the Dense's width; None: hidden_size

    @nn.compact
    def __call__(self, carry: Carry, x: jax.Array, *, train: bool) -> tuple[Carry, jax.Array]:
        """Maps ``x`` ``[B, F]`` to ``[B, width or hidden_size]`` float32; ``carry`` is ``()``."""
        width = self.width or self.hidden_size
        x = torch_dense(width, x.shape[-1], use_bias=self.use_bias, name="linear")(x)
        if self.normalize:
            x = self.norm("bn_linear")(x, train=train)
        return carry, nn.relu(x)

    @classmethod
    def initial_carry(cls, batch_size: int, hidden_size: int) -> Carry:
        """``()``: a feed-forward body has no state."""
        del batch_size, hidden_size
        return ()


class LSTMBody(nn.Module):
    """adept's ``LSTMBody``: one LSTM cell of ``hidden_size`` units (512 in adept). Recurrent.

    With ``normalize`` the cell is ``LSTMCellLayerNorm``, otherwise torch's ``LSTMCell`` with
    zeroed biases. The output is the new ``h``.
    Source: adept ``adept/networks/bodies.py::LSTMBody`` (parity item 9).
    """

    hidden_size: int = 512
    normalize: bool = True
    recurrent: ClassVar[bool] = True

    @nn.compact
    def __call__(self, carry: Carry, x: jax.Array, *, train: bool) -> tuple[LSTMCarry, jax.Array]:
        """One step: ``carry`` ``(c, h)`` each ``[B, H]``, ``x`` ``[B, F]`` → ``(carry, h)``."""
        del train
        carry = LSTMCarry(*carry)
        chex.assert_shape([carry.c, carry.h], (x.shape[0], self.hidden_size))
        cell_cls = LSTMCellLayerNorm if self.normalize else LSTMCell
        carry = cell_cls(self.hidden_size, name="lstm")(carry, x)
        return carry, carry.h

    @classmethod
    def initial_carry(cls, batch_size: int, hidden_size: int) -> LSTMCarry:
        """Zeros ``(c, h)``, each ``[batch_size, hidden_size]`` float32."""
        zeros = jnp.zeros((batch_size, hidden_size), jnp.float32)
        return LSTMCarry(c=zeros, h=zeros)


class Mnih2013Linear(LinearBody):
    """adept's ``Mnih2013Linear``: ``Dense(256) → (BatchNorm) → ReLU``. Feed-forward.

    The 256-unit layer of the 2013 DQN (Mnih et al., "Playing Atari with Deep Reinforcement
    Learning"), to follow the ``Mnih2013`` trunk. Its width is 256 whatever ``hidden_size`` says,
    as in adept; with ``normalize`` the Dense has no bias and a BatchNorm follows it.
    Source: adept ``adept/networks/bodies.py::Mnih2013Linear``.
    """

    width: ClassVar[int | None] = 256


class Mnih2013LSTM(Normalized):
    """adept's ``Mnih2013LSTM``: ``Dense(256) → (BatchNorm) → ReLU → LSTM cell(256)``. Recurrent.

    The Dense keeps its bias even with ``normalize`` (as adept wrote it); the cell is
    ``LSTMCellLayerNorm`` with ``normalize``, else torch's ``LSTMCell`` with zeroed biases. The
    width is 256 whatever ``hidden_size`` says; adept hard-coded the Dense's input to the
    ``Mnih2013`` trunk's 2592 features, fnrl takes any width.
    Source: adept ``adept/networks/bodies.py::Mnih2013LSTM``.
    """

    hidden_size: int = 512  # unused: the width is 256
    recurrent: ClassVar[bool] = True
    width: ClassVar[int] = 256

    @nn.compact
    def __call__(self, carry: Carry, x: jax.Array, *, train: bool) -> tuple[LSTMCarry, jax.Array]:
        """One step: ``carry`` ``(c, h)`` each ``[B, 256]``, ``x`` ``[B, F]`` → ``(carry, h)``."""
        carry = LSTMCarry(*carry)
        chex.assert_shape([carry.c, carry.h], (x.shape[0], self.width))
        x = torch_dense(self.width, x.shape[-1], name="linear")(x)
        if self.normalize:
            x = self.norm("bn_linear")(x, train=train)
        cell_cls = LSTMCellLayerNorm if self.normalize else LSTMCell
        carry = cell_cls(self.width, name="lstm")(carry, nn.relu(x))
        return carry, carry.h

    @classmethod
    def initial_carry(cls, batch_size: int, hidden_size: int) -> LSTMCarry:
        """Zeros ``(c, h)``, each ``[batch_size, 256]`` float32 (``hidden_size`` is unused)."""
        del hidden_size
        zeros = jnp.zeros((batch_size, cls.width), jnp.float32)
        return LSTMCarry(c=zeros, h=zeros)


class RMCCarry(NamedTuple):
    """The recurrent state of the ``RMC`` body (adept's memory ``internals``)."""

    memory: jax.Array  # [B, mem_slots, hidden_size // mem_slots] float32


class RMCBody(nn.Module):
    """The relational memory core as a body: ``RMCCell`` over the trunk features. Recurrent.

    ``mem_slots`` (4) memory rows of ``M = hidden_size // mem_slots`` features (128 for
    adept's 512), attended by ``nb_head`` heads of ``M // nb_head`` features. Each step appends
    the projected trunk features as one extra row, attends, gates, and outputs the flattened
    next memory, ``[B, hidden_size]``. The memory starts (and restarts where an episode starts)
    as rows of the identity matrix (``initial_memory``). The core always layer-normalizes
    (Santoro et al.); ``normalize`` does not change it.

    adept's 2018 ``RMC`` network (parity item 42) was an unfinished image network whose
    internals were never created; fnrl offers the core as a body, so it works behind any trunk.
    Source: Santoro et al. 2018, "Relational recurrent neural networks"; adept
    ``adept/networks/rmc.py``.

    Attributes:
        hidden_size: output width, ``mem_slots * M``; a multiple of ``mem_slots * nb_head``.
        normalize: unused.
        nb_head: attention heads (adept ``--nb-head``).
    """

    hidden_size: int = 512
    normalize: bool = True  # unused; every body takes the same fields
    nb_head: int = 1
    recurrent: ClassVar[bool] = True
    mem_slots: ClassVar[int] = 4

    def __post_init__(self) -> None:
        slots = self.mem_slots
        if self.nb_head < 1 or self.hidden_size % (slots * self.nb_head):
            raise ValueError(
                f"the RMC body splits hidden_size={self.hidden_size} into {slots} memory slots "
                f"of {self.nb_head} attention heads each: choose a hidden size divisible by "
                f"{slots} * nb_head = {slots * max(self.nb_head, 1)}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: Carry, x: jax.Array, *, train: bool) -> tuple[RMCCarry, jax.Array]:
        """One step: ``carry.memory`` ``[B, N, M]``, ``x`` ``[B, F]`` → ``(carry, [B, N * M])``."""
        del train
        carry = RMCCarry(*carry)
        mem_size = self.hidden_size // self.mem_slots
        cell = RMCCell(self.mem_slots, mem_size // self.nb_head, self.nb_head, name="rmc")
        memory = cell(carry.memory, x)
        return RMCCarry(memory), memory.reshape(memory.shape[0], -1)

    @classmethod
    def initial_carry(cls, batch_size: int, hidden_size: int) -> RMCCarry:
        """Identity-matrix rows, ``[batch_size, mem_slots, hidden_size // mem_slots]``."""
        return RMCCarry(initial_memory(batch_size, cls.mem_slots, hidden_size // cls.mem_slots))
