"""The relational memory core (Santoro et al. 2018), as adept's ``RMCCell`` meant it.

Santoro et al. 2018, "Relational recurrent neural networks" (arXiv:1806.01822); reference
implementation ``sonnet/python/modules/relational_memory.py``; adept
``adept/modules/attention.py::RMCCell``.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.networks._layers import torch_dense, torch_layer_norm
from fnrl.networks.modules.attention import MultiHeadSelfAttention


def initial_memory(batch_size: int, mem_slots: int, mem_size: int) -> jax.Array:
    """The relational memory's start state: each slot a distinct row of the identity matrix.

    Santoro et al. (sonnet's ``RelationalMemory.initial_state``): ``eye(mem_slots)`` padded with
    zeros (or truncated) to ``mem_size`` columns. Distinct rows matter: slots that start equal
    receive equal updates and stay equal forever.

    Returns:
        ``[batch_size, mem_slots, mem_size]`` float32.
    """
    eye = jnp.eye(mem_slots, mem_size, dtype=jnp.float32)
    return jnp.broadcast_to(eye, (batch_size, mem_slots, mem_size))


class _ReluMLP(nn.Module):
    """adept's row-wise MLP of the RMC (``ModuleList`` ``mlp.0``, ``mlp.1``…): ReLU after each."""

    layers: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        for i in range(self.layers):
            x = nn.relu(torch_dense(width, width, name=str(i))(x))
        return x


class RMCCell(nn.Module):
    """One step of the relational memory core: memory ``[B, N, M]`` and input ``[B, D]``.

    With ``M = head_size * num_heads``:

    1. ``u = input_linear(x)`` (Dense ``[D, M]``), one extra row ``[B, 1, M]``;
    2. ``num_blocks`` times over ``[memory; u]`` (``[B, N + 1, M]``): multi-head self-attention
       (scaled, unmasked), ``LN1(m + attention(m))``, ``LN2(m + MLP(m))`` (the same modules in
       every block, as adept); keep the ``N`` memory rows;
    3. gates ``i, f = split(ih(u) + hh(tanh(memory)))`` (Dense ``[M, 2M]`` each, zero biases),
       ``memory' = σ(i + input_bias) tanh(attended) + σ(f + forget_bias) memory``.

    Params: ``input_linear``, ``attention`` (``qk_projection``, ``v_projection``), ``mlp``
    (``0``, ``1``…), ``ln1``, ``ln2`` (LayerNorm over ``M`` per slot), ``ih``, ``hh``.

    adept's 2018 ``RMCCell`` did not work as written; fnrl implements the intended core and
    departs from it in four places: attention runs over ``N + 1`` rows without adept's causal
    mask (with it, no memory row could read the input appended after it), with ``num_heads``
    heads (adept hard-coded 1), it keeps the memory rows (adept sliced ``[:, :-N]``, right only
    when the input had ``N`` rows too), and layer norms act per slot over ``M`` like sonnet's
    (adept normalized over ``[N + 1, M]`` jointly, tying the parameters to the number of rows).

    Attributes:
        mem_slots: ``N``, number of memory rows.
        head_size: width of each attention head.
        num_heads: number of attention heads.
        num_blocks: attention blocks per step (sonnet default 1).
        num_mlp: layers of the row-wise MLP (adept default 2).
        input_bias: added to the input gate before the sigmoid (sonnet default 0).
        forget_bias: added to the forget gate before the sigmoid (sonnet default 1).
    """

    mem_slots: int
    head_size: int
    num_heads: int = 1
    num_blocks: int = 1
    num_mlp: int = 2
    input_bias: float = 0.0
    forget_bias: float = 1.0

    @property
    def mem_size(self) -> int:
        """``M = head_size * num_heads``: the width of each memory row."""
        return self.head_size * self.num_heads

    @nn.compact
    def __call__(self, memory: jax.Array, x: jax.Array) -> jax.Array:
        """Returns the next memory ``[B, N, M]`` float32 from ``memory`` ``[B, N, M]``, ``x``
        ``[B, D]``."""
        size = self.mem_size
        chex.assert_rank([memory, x], [3, 2])
        chex.assert_shape(memory, (x.shape[0], self.mem_slots, size))

        u = torch_dense(size, x.shape[-1], name="input_linear")(x)[:, None, :]  # [B, 1, M]
        attention = MultiHeadSelfAttention(
            self.num_heads, size, size, causal=False, scale=True, name="attention"
        )
        mlp = _ReluMLP(self.num_mlp, name="mlp")
        ln1, ln2 = torch_layer_norm(name="ln1"), torch_layer_norm(name="ln2")
        m = jnp.concatenate([memory, u], axis=1)
        for _ in range(self.num_blocks):
            m = ln1(m + attention(m))
            m = ln2(mlp(m) + m)
        attended = m[:, : self.mem_slots]

        ih = torch_dense(2 * size, size, zero_bias=True, name="ih")
        hh = torch_dense(2 * size, size, zero_bias=True, name="hh")
        preact = ih(u) + hh(jnp.tanh(memory))  # [B, 1, 2M] + [B, N, 2M]
        input_gate = nn.sigmoid(preact[..., :size] + self.input_bias)
        forget_gate = nn.sigmoid(preact[..., size:] + self.forget_bias)
        return input_gate * jnp.tanh(attended) + forget_gate * memory
