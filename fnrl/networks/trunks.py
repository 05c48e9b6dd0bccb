"""Trunks: one pathway per observation, turning it into a flat feature vector ``[B, F]``.

adept routes observations by rank (parity items 7, 11, 35): a rank-3 image ``[H, W, C]`` goes
through a *vision network*, a rank-1 vector ``[D]`` through a *discrete network*; the features
of all pathways are concatenated and fed to the body.

Every trunk is a ``flax.linen`` module with the field ``normalize: bool`` (adept's
``--normalize``) and ``__call__(x, *, train) -> [B, F] float32``; built-in trunks also take
``normalization`` (``"batch"``, ``"running"`` or ``"layer"``, see ``ModularNetwork``) and,
where they attend, ``nb_head``. ``ModularNetwork`` passes each trunk only the fields it declares.

Vision trunks take float32 images ``[B, H, W, C]`` (channels-last, already scaled:
``ModularNetwork`` divides uint8 by 255) and flatten their last feature map in PyTorch's
``(C, H, W)`` order so that a converted torch ``state_dict`` gives identical features.
"""

from __future__ import annotations

from typing import ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.networks._layers import (
    Normalized,
    coordinate_channels,
    torch_conv,
    torch_dense,
)
from fnrl.networks.modules.attention import MultiHeadSelfAttention


def flatten_chw(x: jax.Array) -> jax.Array:
    """Flattens channels-last ``[B, H, W, C]`` in PyTorch's ``(C, H, W)`` order: ``[B, C*H*W]``."""
    chex.assert_rank(x, 4)
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``torch.nn.Conv2d`` / ``MaxPool2d`` output length along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


class _ConvTrunk(Normalized):
    """A stack of conv → (BatchNorm) → ReLU layers, flattened; subclasses set ``layers``.

    With ``normalize`` the convs have no bias and each is followed by a BatchNorm (adept's
    ``bias = not normalize``); conv weights are torch's default init times ``sqrt(2)``.
    """

    # (out_channels, kernel, stride, padding) per conv, padding as in torch.nn.Conv2d.
    layers: ClassVar[tuple[tuple[int, int, int, int], ...]] = ()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps images ``[B, H, W, C]`` float32 to features ``[B, output_size(H, W)]`` float32."""
        chex.assert_rank(x, 4)
        x = x.astype(jnp.float32)
        for i, (features, kernel, stride, padding) in enumerate(self.layers, start=1):
            conv = torch_conv(
                features,
                kernel,
                stride,
                padding,
                x.shape[-1],
                use_bias=self.use_bias,
                name=f"conv{i}",
            )
            x = conv(x)
            if self.normalize:
                x = self.norm(f"bn{i}")(x, train=train)
            x = nn.relu(x)
        return flatten_chw(x)

    @classmethod
    def output_size(cls, height: int, width: int) -> int:
        """Number of features for an ``height x width`` image (adept's ``nb_output_channel``).

        Raises:
            ValueError: the image is too small for the convolutions.
        """
        channels = 0
        for features, kernel, stride, padding in cls.layers:
            height = conv_output_size(height, kernel, stride, padding)
            width = conv_output_size(width, kernel, stride, padding)
            channels = features
        if height < 1 or width < 1:
            raise ValueError(f"{cls.__name__}: the image is too small for its convolutions")
        return channels * height * width


class FourConv(_ConvTrunk):
    """adept's default vision trunk: four 32-channel convs, 800 features for 84x84.

    conv 32 7x7 stride 2 pad 1, then three conv 32 3x3 stride 2 pad 1, each followed by
    (BatchNorm and) ReLU: 84 → 40 → 20 → 10 → 5, flattened to ``32 * 5 * 5 = 800``.
    Source: adept ``adept/networks/vision/networks.py::FourConv``.
    """

    layers: ClassVar[tuple[tuple[int, int, int, int], ...]] = (
        (32, 7, 2, 1),
        (32, 3, 2, 1),
        (32, 3, 2, 1),
        (32, 3, 2, 1),
    )


class FourConvLarger(_ConvTrunk):
    """FourConv with wider layers (32, 64, 64, 128 channels): 3200 features for 84x84.

    Source: adept ``adept/networks/vision/networks.py::FourConvLarger``.
    """

    layers: ClassVar[tuple[tuple[int, int, int, int], ...]] = (
        (32, 7, 2, 1),
        (64, 3, 2, 1),
        (64, 3, 2, 1),
        (128, 3, 2, 1),
    )


class Nature(_ConvTrunk):
    """The Nature DQN convolutions: 3136 features for 84x84.

    conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1 (no padding), each with (BatchNorm and) ReLU:
    84 → 20 → 9 → 7, flattened to ``64 * 7 * 7 = 3136``. Like adept, the trunk stops at the
    flatten; the 512-unit layer of the paper is the ``Linear`` body.
    Source: Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015;
    adept ``adept/networks/vision/networks.py::Nature``.
    """

    layers: ClassVar[tuple[tuple[int, int, int, int], ...]] = (
        (32, 8, 4, 0),
        (64, 4, 2, 0),
        (64, 3, 1, 0),
    )


class Mnih2013(_ConvTrunk):
    """The 2013 DQN convolutions: conv 16 8x8/4, conv 32 4x4/2: 2592 features for 84x84.

    Source: Mnih et al., "Playing Atari with Deep Reinforcement Learning", 2013;
    adept ``adept/networks/vision/networks.py::Mnih2013``.
    """

    layers: ClassVar[tuple[tuple[int, int, int, int], ...]] = (
        (16, 8, 4, 0),
        (32, 4, 2, 0),
    )


class MinAtar(_ConvTrunk):
    """The MinAtar network's convolution: conv 16 3x3/1, no padding: 1024 features for 10x10.

    For MinAtar's 10x10 boards (and other small images, which adept's trunks shrink to nothing):
    10 → 8, flattened to ``16 * 8 * 8 = 1024``; the paper's 128-unit layer is the ``Linear``
    body of ``ModularNetwork(hidden_size=128)`` (runs keep adept's width, 512).
    Source: Young & Tian, "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible
    Reinforcement Learning Experiments", 2019 (arXiv:1903.03176), the network of its
    actor-critic and DQN agents.
    """

    layers: ClassVar[tuple[tuple[int, int, int, int], ...]] = ((16, 3, 1, 0),)


class FourConvSpatialAttention(Normalized):
    """adept's ``FourConvSpatialAttention``: two convs, self-attention over positions, two convs.

    conv 32 3x3/2 pad 1 → (BatchNorm) → ReLU, twice (84 → 42 → 21); two coordinate channels
    (x then y in ``[-1, 1]``, 34 channels); multi-head self-attention over the ``21 * 21``
    positions (``MultiHeadSelfAttention(nb_head, 34, 34)``, adept's causal mask over the
    row-major positions, unscaled); ``mlp`` Dense(34) → ReLU; conv 32 3x3/2 pad 1 → (BatchNorm)
    → ReLU, twice (21 → 11 → 6); flattened: ``32 * 6 * 6 = 1152`` features for 84x84.

    adept hard-coded a 20x20 attention grid (80x80 inputs) and failed on 84x84; fnrl sizes the
    grid from the input, so any image of at least 9x9 works.
    Source: adept ``adept/networks/vision/networks.py::FourConvSpatialAttention``, after
    Zambaldi et al. 2018, "Relational Deep Reinforcement Learning" (arXiv:1806.01830).

    Attributes:
        nb_head: attention heads (adept ``--nb-head``); must divide 34: 1, 2, 17 or 34.
    """

    nb_head: int = 1
    channels: ClassVar[int] = 32

    def __post_init__(self) -> None:
        width = self.channels + 2
        if self.nb_head < 1 or width % self.nb_head:
            raise ValueError(
                f"FourConvSpatialAttention attends over {width} channels (32 conv channels and 2 "
                f"coordinates): --nb-head must divide {width} (1, 2, 17 or 34), got {self.nb_head}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps images ``[B, H, W, C]`` float32 to ``[B, output_size(H, W)]`` float32."""
        chex.assert_rank(x, 4)
        x = x.astype(jnp.float32)

        def conv_block(x: jax.Array, i: int) -> jax.Array:
            conv = torch_conv(
                self.channels, 3, 2, 1, x.shape[-1], use_bias=self.use_bias, name=f"conv{i}"
            )
            x = conv(x)
            if self.normalize:
                x = self.norm(f"bn{i}")(x, train=train)
            return nn.relu(x)

        x = conv_block(conv_block(x, 1), 2)
        x = coordinate_channels(x)
        batch, height, width, channels = x.shape
        x = x.reshape(batch, height * width, channels)  # row-major positions, as torch's view
        x = MultiHeadSelfAttention(self.nb_head, channels, channels, name="attention")(x)
        x = nn.relu(torch_dense(channels, channels, name="mlp")(x))
        x = x.reshape(batch, height, width, channels)
        x = conv_block(conv_block(x, 3), 4)
        return flatten_chw(x)

    @classmethod
    def output_size(cls, height: int, width: int) -> int:
        """``32 * h * w`` after four 3x3/2 convs: 1152 for 84x84.

        Raises:
            ValueError: the image is too small for the convolutions.
        """
        for _ in range(4):
            height = conv_output_size(height, 3, 2, 1)
            width = conv_output_size(width, 3, 2, 1)
        if height < 1 or width < 1:
            raise ValueError(f"{cls.__name__}: the image is too small for its convolutions")
        return cls.channels * height * width


class IdentityTrunk(nn.Module):
    """adept's ``DiscreteIdentity``: a rank-1 observation ``[B, D]`` passes through as float32.

    Source: adept ``adept/networks/discrete/networks.py::DiscreteIdentity`` (parity item 35).
    """

    normalize: bool = True  # unused; every trunk takes the same fields

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Returns ``x`` ``[B, ...]`` flattened to ``[B, D]`` float32."""
        del train
        x = jnp.asarray(x)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)


class LinearTrunk(Normalized):
    """An MLP for rank-1 observations: ``Dense → (BatchNorm) → ReLU`` per entry of ``features``.

    adept 2018 had only the identity pathway for vectors; its later ``net1d.Linear`` submodule is
    this layer (with 512 units). The default ``(64, 64)`` is the common two-layer MLP for small
    control tasks (e.g. CartPole); with ``normalize`` the Dense layers have no bias and are
    followed by a BatchNorm, as in adept.
    """

    features: tuple[int, ...] = (64, 64)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps ``[B, D]`` to ``[B, features[-1]]`` float32."""
        x = jnp.asarray(x)
        x = x.reshape(x.shape[0], -1).astype(jnp.float32)
        for i, width in enumerate(self.features, start=1):
            x = torch_dense(width, x.shape[-1], use_bias=self.use_bias, name=f"linear{i}")(x)
            if self.normalize:
                x = self.norm(f"bn{i}")(x, train=train)
            x = nn.relu(x)
        return x
