"""Multi-head dot-product attention over a set of embeddings, as adept wrote it.

Both modules follow adept's ``adept/modules/attention.py`` (adapted there from the OpenAI
transformer LM): queries, keys and values are split into ``num_heads`` heads of equal width,
``softmax(q k^T) v`` per head, heads concatenated. Differences from ``flax.linen`` attention
that matter for weight parity: queries and keys come from one fused projection (and, in
``RelationalMHDPA``, values too), the optional scale divides by the square root of the *value*
head width, and adept's causal (lower-triangular) mask is on by default.
"""

from __future__ import annotations

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.networks._layers import torch_dense

_MASKED = -1e9  # adept's additive mask value (TF's mask_attn_weights)


def _check_heads(num_heads: int, **widths: int) -> None:
    if num_heads < 1:
        raise ValueError(f"num_heads must be at least 1, got {num_heads}")
    for name, width in widths.items():
        if width % num_heads:
            raise ValueError(
                f"{name}={width} is not divisible by num_heads={num_heads}; choose a number of "
                f"heads that divides {width}"
            )


def _split_heads(x: jax.Array, num_heads: int) -> jax.Array:
    """``[B, N, H * d]`` → ``[B, H, N, d]``."""
    batch, length, width = x.shape
    return x.reshape(batch, length, num_heads, width // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(x: jax.Array) -> jax.Array:
    """``[B, H, N, d]`` → ``[B, N, H * d]``."""
    batch, heads, length, width = x.shape
    return x.transpose(0, 2, 1, 3).reshape(batch, length, heads * width)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, *, scale: bool, causal: bool) -> jax.Array:
    """``softmax(q k^T [/ sqrt(d_v)] [masked]) v`` per head; all ``[B, H, N, d]``."""
    w = jnp.einsum("bhnd,bhmd->bhnm", q, k)
    if scale:
        w = w / math.sqrt(v.shape[-1])
    if causal:
        length = w.shape[-1]
        mask = jnp.tril(jnp.ones((length, length), bool)).reshape(1, 1, length, length)
        w = jnp.where(mask, w, _MASKED)
    w = jax.nn.softmax(w, axis=-1)
    return jnp.einsum("bhnm,bhmd->bhnd", w, v)


class MultiHeadSelfAttention(nn.Module):
    """adept's ``MultiHeadSelfAttention``: self-attention over ``N`` embeddings.

    ``q, k = split(qk_projection(x))``, ``v = v_projection(x)``, each split into ``num_heads``
    heads; per head ``softmax(q k^T / s + mask) v`` with ``s = sqrt(v_features / num_heads)``
    when ``scale`` (else 1) and adept's lower-triangular mask when ``causal`` (position ``i``
    attends to positions ``<= i``); heads are concatenated. Params ``qk_projection`` (Dense
    ``[C, 2 * qk_features]``) and ``v_projection`` (Dense ``[C, v_features]``), torch default
    init. Source: adept ``adept/modules/attention.py::MultiHeadSelfAttention``; Vaswani et al.
    2017, "Attention Is All You Need".

    Attributes:
        num_heads: number of heads (adept ``--nb-head``); divides both widths.
        qk_features: width of the queries and of the keys.
        v_features: width of the values and of the output.
        causal: adept's lower-triangular mask (adept always applies it).
        scale: divide the logits by the square root of the value head width.
    """

    num_heads: int
    qk_features: int
    v_features: int
    causal: bool = True
    scale: bool = False

    def __post_init__(self) -> None:
        _check_heads(self.num_heads, qk_features=self.qk_features, v_features=self.v_features)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``x`` ``[B, N, C]`` float32 to ``[B, N, v_features]`` float32."""
        chex.assert_rank(x, 3)
        width = x.shape[-1]
        qk = torch_dense(2 * self.qk_features, width, name="qk_projection")(x)
        q, k = qk[..., : self.qk_features], qk[..., self.qk_features :]
        v = torch_dense(self.v_features, width, name="v_projection")(x)
        heads = [_split_heads(t, self.num_heads) for t in (q, k, v)]
        return _merge_heads(_attend(*heads, scale=self.scale, causal=self.causal))


class RelationalMHDPA(nn.Module):
    """adept's ``RelationalMHDPA``: multi-head dot-product attention with an output layer.

    ``q, k, v = split(projection(x))`` (Dense ``[C, 3C]``), each split into ``num_heads`` heads;
    per head ``softmax(q k^T / s + mask) v`` (``s`` and the mask as in
    ``MultiHeadSelfAttention``); heads concatenated and mapped by ``mlp`` (Dense ``[C, C]``).
    Torch default init. Source: adept ``adept/modules/attention.py::RelationalMHDPA``, the
    relational block of Zambaldi et al. 2018, "Relational Deep Reinforcement Learning".

    Attributes:
        num_heads: number of heads; divides the input width ``C``.
        scale: divide the logits by the square root of the head width.
        causal: adept's lower-triangular mask.
    """

    num_heads: int
    scale: bool = False
    causal: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``x`` ``[B, N, C]`` float32 to ``[B, N, C]`` float32."""
        chex.assert_rank(x, 3)
        width = x.shape[-1]
        _check_heads(self.num_heads, channels=width)
        qkv = torch_dense(3 * width, width, name="projection")(x)
        heads = [
            _split_heads(qkv[..., i * width : (i + 1) * width], self.num_heads) for i in range(3)
        ]
        out = _merge_heads(_attend(*heads, scale=self.scale, causal=self.causal))
        return torch_dense(width, width, name="mlp")(out)
