"""Residual vision trunks: adept's ResNet18 … ResNet152 (V1 and V2) and the IMPALA ResNet.

adept's ResNets (parity item 34) are torchvision's ImageNet ResNets without their stem and
classifier, behind adept's own stem: conv 64 7x7/2 pad 1 → (BatchNorm) → ReLU (84 → 40), then
``layer1`` … ``layer4`` (40 → 40 → 20 → 10 → 5), average pooling 5x5/1 and flatten: 512
features (basic blocks) or 2048 (bottlenecks) for 84x84. Inside the residual stages every conv
is bias-free and followed by a BatchNorm whatever ``normalize`` says (adept's ``normalize``
only concerns the stem), and convs use ``kaiming_normal_(mode="fan_out")``.

Parameter names mirror adept's ``torch.nn`` modules (``resnet.layer1.0.conv1`` …,
``resnet.layer2.0.downsample.0`` for the projection conv and ``.1`` for its BatchNorm), so
``fnrl.networks.torch_interop`` converts them one to one.
"""

from __future__ import annotations

from typing import ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.networks._layers import (
    Normalized,
    avg_pool_2d,
    kaiming_normal_fan_out,
    keeps_bias,
    max_pool_2d,
    normalization_layer,
    torch_conv,
    torch_dense,
)
from fnrl.networks.trunks import conv_output_size, flatten_chw

_EXPANSION = {"basic": 1, "basic_v2": 1, "bottleneck": 4, "bottleneck_v2": 4}
_STAGE_WIDTHS = (64, 128, 256, 512)


def _resnet_conv(features: int, kernel: int, stride: int, in_channels: int, name: str) -> nn.Conv:
    """A bias-free conv with torch's padding ``kernel // 2`` and kaiming-normal (fan-out) init."""
    return torch_conv(
        features,
        kernel,
        stride,
        kernel // 2,
        in_channels,
        use_bias=False,
        kernel_init=kaiming_normal_fan_out(),
        name=name,
    )


class _Downsample(nn.Module):
    """The projection shortcut: conv 1x1/stride (``0``) → BatchNorm (``1``)."""

    features: int
    stride: int
    normalization: str

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = _resnet_conv(self.features, 1, self.stride, x.shape[-1], name="0")(x)
        return normalization_layer(self.normalization, "1")(x, train=train)


class _Block(nn.Module):
    """One residual block of adept's ``_resnets.py``, in one of its four forms.

    * ``basic``: conv3x3/stride → BN → ReLU → conv3x3 → BN, + shortcut, ReLU.
    * ``basic_v2`` (adept's ``BasicBlockV2``, as adept wrote it): BN → conv3x3/stride → ReLU →
      BN → conv3x3 → ReLU, + shortcut.
    * ``bottleneck``: conv1x1 → BN → ReLU → conv3x3/stride → BN → ReLU → conv1x1 (4x) → BN,
      + shortcut, ReLU.
    * ``bottleneck_v2`` (He et al. 2016b pre-activation): BN → ReLU → conv1x1 → BN → ReLU →
      conv3x3/stride → BN → ReLU → conv1x1 (4x), + shortcut.

    The shortcut is ``_Downsample`` when the stride or the width changes, else the identity.
    """

    kind: str
    planes: int
    stride: int
    downsample: bool
    normalization: str

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        def bn(name: str, y: jax.Array) -> jax.Array:
            return normalization_layer(self.normalization, name)(y, train=train)

        def conv(name: str, y: jax.Array, features: int, kernel: int, stride: int = 1):
            return _resnet_conv(features, kernel, stride, y.shape[-1], name)(y)

        planes, stride = self.planes, self.stride
        if self.kind == "basic":
            out = nn.relu(bn("bn1", conv("conv1", x, planes, 3, stride)))
            out = bn("bn2", conv("conv2", out, planes, 3))
        elif self.kind == "basic_v2":
            out = nn.relu(conv("conv1", bn("bn1", x), planes, 3, stride))
            out = nn.relu(conv("conv2", bn("bn2", out), planes, 3))
        elif self.kind == "bottleneck":
            out = nn.relu(bn("bn1", conv("conv1", x, planes, 1)))
            out = nn.relu(bn("bn2", conv("conv2", out, planes, 3, stride)))
            out = bn("bn3", conv("conv3", out, 4 * planes, 1))
        else:  # bottleneck_v2
            out = conv("conv1", nn.relu(bn("bn1", x)), planes, 1)
            out = conv("conv2", nn.relu(bn("bn2", out)), planes, 3, stride)
            out = conv("conv3", nn.relu(bn("bn3", out)), 4 * planes, 1)

        residual = x
        if self.downsample:
            residual = _Downsample(
                _EXPANSION[self.kind] * planes,
                stride,
                self.normalization,
                name="downsample",
            )(x, train=train)
        out = out + residual
        return out if self.kind.endswith("_v2") else nn.relu(out)


class _Stage(nn.Module):
    """``layerN``: ``num_blocks`` blocks named ``0``, ``1``…; the first one strides."""

    kind: str
    planes: int
    num_blocks: int
    stride: int
    normalization: str

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        out_channels = _EXPANSION[self.kind] * self.planes
        for i in range(self.num_blocks):
            stride = self.stride if i == 0 else 1
            downsample = i == 0 and (stride != 1 or x.shape[-1] != out_channels)
            block = _Block(
                self.kind, self.planes, stride, downsample, self.normalization, name=str(i)
            )
            x = block(x, train=train)
        return x


class _ResNetStages(nn.Module):
    """adept's ``_resnets.ResNet``: ``layer1`` … ``layer4`` then AvgPool 5x5/1."""

    kind: str
    layer_sizes: tuple[int, ...]
    normalization: str

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for i, (planes, num_blocks) in enumerate(zip(_STAGE_WIDTHS, self.layer_sizes, strict=True)):
            stage = _Stage(
                self.kind,
                planes,
                num_blocks,
                1 if i == 0 else 2,
                self.normalization,
                name=f"layer{i + 1}",
            )
            x = stage(x, train=train)
        return avg_pool_2d(x, 5, 1)


class _ResNetTrunk(Normalized):
    """adept's ``BaseResNet``: stem conv 64 7x7/2 pad 1 → (BatchNorm) → ReLU, then the stages.

    The stem conv has a bias unless ``normalize`` and torch's default init times ``sqrt(2)``.
    Subclasses set ``block`` and ``layer_sizes``.
    """

    block: ClassVar[str] = "basic"
    layer_sizes: ClassVar[tuple[int, ...]] = (2, 2, 2, 2)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps images ``[B, H, W, C]`` float32 to ``[B, output_size(H, W)]`` float32."""
        chex.assert_rank(x, 4)
        x = x.astype(jnp.float32)
        x = torch_conv(64, 7, 2, 1, x.shape[-1], use_bias=self.use_bias, name="conv1")(x)
        if self.normalize:
            x = self.norm("bn1")(x, train=train)
        x = nn.relu(x)
        stages = _ResNetStages(self.block, self.layer_sizes, self.normalization, name="resnet")
        return flatten_chw(stages(x, train=train))

    @classmethod
    def output_size(cls, height: int, width: int) -> int:
        """``512 * expansion * (h - 4) * (w - 4)``: 512 or 2048 for 84x84.

        Raises:
            ValueError: the image is too small (under 72x72) for the stem, the three strided
                stages and the 5x5 pooling.
        """

        def size(n: int) -> int:
            n = conv_output_size(n, 7, 2, 1)
            for _ in range(3):
                n = conv_output_size(n, 3, 2, 1)
            return n - 4

        height, width = size(height), size(width)
        if height < 1 or width < 1:
            raise ValueError(
                f"{cls.__name__}: the image is too small for its convolutions and 5x5 pooling"
            )
        return _EXPANSION[cls.block] * _STAGE_WIDTHS[-1] * height * width


class ResNet18(_ResNetTrunk):
    """adept's ResNet18: stages of (2, 2, 2, 2) basic blocks, 512 features for 84x84.

    Source: He et al. 2016, "Deep Residual Learning for Image Recognition"; adept
    ``adept/networks/vision/networks.py::ResNet18``.
    """

    block: ClassVar[str] = "basic"
    layer_sizes: ClassVar[tuple[int, ...]] = (2, 2, 2, 2)


class ResNet18V2(_ResNetTrunk):
    """adept's ResNet18V2: (2, 2, 2, 2) of adept's ``BasicBlockV2``, 512 features for 84x84.

    adept's V2 basic block is BN → conv → ReLU → BN → conv → ReLU plus the shortcut (not He et
    al.'s BN → ReLU → conv order); fnrl keeps adept's order so that weights carry over.
    Source: adept ``adept/networks/vision/networks.py::ResNet18V2``.
    """

    block: ClassVar[str] = "basic_v2"
    layer_sizes: ClassVar[tuple[int, ...]] = (2, 2, 2, 2)


class ResNet34(_ResNetTrunk):
    """adept's ResNet34: stages of (3, 4, 6, 3) basic blocks, 512 features for 84x84.

    Source: He et al. 2016; adept ``adept/networks/vision/networks.py::ResNet34``.
    """

    block: ClassVar[str] = "basic"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 4, 6, 3)


class ResNet34V2(_ResNetTrunk):
    """adept's ResNet34V2: (3, 4, 6, 3) of adept's ``BasicBlockV2`` (see ``ResNet18V2``).

    Source: adept ``adept/networks/vision/networks.py::ResNet34V2``.
    """

    block: ClassVar[str] = "basic_v2"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 4, 6, 3)


class ResNet50(_ResNetTrunk):
    """ResNet50: stages of (3, 4, 6, 3) bottleneck blocks, 2048 features for 84x84.

    adept's ``ResNet50`` built the V2 network by mistake (``resnet50v2()``); fnrl's is the
    post-activation ResNet50 the name promises, and ``ResNet50V2`` is the pre-activation one.
    Source: He et al. 2016; adept ``adept/networks/vision/_resnets.py::resnet50``.
    """

    block: ClassVar[str] = "bottleneck"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 4, 6, 3)


class ResNet50V2(_ResNetTrunk):
    """adept's ResNet50V2: (3, 4, 6, 3) pre-activation bottlenecks, 2048 features for 84x84.

    Source: He et al. 2016b, "Identity Mappings in Deep Residual Networks"; adept
    ``adept/networks/vision/networks.py::ResNet50V2``.
    """

    block: ClassVar[str] = "bottleneck_v2"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 4, 6, 3)


class ResNet101(_ResNetTrunk):
    """adept's ResNet101: stages of (3, 4, 23, 3) bottleneck blocks, 2048 features for 84x84.

    Source: He et al. 2016; adept ``adept/networks/vision/networks.py::ResNet101``.
    """

    block: ClassVar[str] = "bottleneck"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 4, 23, 3)


class ResNet101V2(_ResNetTrunk):
    """adept's ResNet101V2: (3, 4, 23, 3) pre-activation bottlenecks, 2048 features for 84x84.

    Source: He et al. 2016b; adept ``adept/networks/vision/networks.py::ResNet101V2``.
    """

    block: ClassVar[str] = "bottleneck_v2"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 4, 23, 3)


class ResNet152(_ResNetTrunk):
    """adept's ResNet152: stages of (3, 8, 36, 3) bottleneck blocks, 2048 features for 84x84.

    Source: He et al. 2016; adept ``adept/networks/vision/networks.py::ResNet152``.
    """

    block: ClassVar[str] = "bottleneck"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 8, 36, 3)


class ResNet152V2(_ResNetTrunk):
    """adept's ResNet152V2: (3, 8, 36, 3) pre-activation bottlenecks, 2048 features for 84x84.

    Source: He et al. 2016b; adept ``adept/networks/vision/networks.py::ResNet152V2``.
    """

    block: ClassVar[str] = "bottleneck_v2"
    layer_sizes: ClassVar[tuple[int, ...]] = (3, 8, 36, 3)


class _ImpalaResidual(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))``, each conv 3x3/1 (→ BatchNorm with ``normalize``)."""

    normalize: bool
    normalization: str

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        out = x
        for i in (1, 2):
            out = nn.relu(out)
            channels = out.shape[-1]
            conv = torch_conv(
                channels,
                3,
                1,
                1,
                channels,
                use_bias=keeps_bias(self.normalize, self.normalization),
                name=f"conv{i}",
            )
            out = conv(out)
            if self.normalize:
                out = normalization_layer(self.normalization, f"bn{i}")(out, train=train)
        return x + out


class _ImpalaSection(nn.Module):
    """conv 3x3/1 (``conv``, → ``bn``) → MaxPool 3x3/2 pad 1 → ``res1`` → ``res2``."""

    features: int
    normalize: bool
    normalization: str

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv = torch_conv(
            self.features,
            3,
            1,
            1,
            x.shape[-1],
            use_bias=keeps_bias(self.normalize, self.normalization),
            name="conv",
        )
        x = conv(x)
        if self.normalize:
            x = normalization_layer(self.normalization, "bn")(x, train=train)
        x = max_pool_2d(x, 3, 2, 1)
        for i in (1, 2):
            res = _ImpalaResidual(self.normalize, self.normalization, name=f"res{i}")
            x = res(x, train=train)
        return x


class IMPALA(Normalized):
    """The deep ResNet torso of IMPALA: three residual sections, then a 256-unit layer.

    Per section with 16, 32, 32 channels: conv 3x3/1 pad 1, MaxPool 3x3/2 pad 1, two residual
    blocks ``x + conv(relu(conv(relu(x))))``; then ReLU, flatten (``32 * 11 * 11 = 3872`` for
    84x84), ``linear`` Dense(256) and ReLU: 256 features. With ``normalize`` every conv and the
    Dense lose their bias and are followed by a BatchNorm (adept's ``--normalize`` convention;
    the paper has no normalization). Convs use adept's init (torch default times ``sqrt(2)``),
    the Dense torch's default. MaxPool pads symmetrically like ``torch.nn.MaxPool2d`` (TF's
    ``SAME`` pads only after on even sizes).
    Source: Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance
    Weighted Actor-Learner Architectures", figure 3 (right).
    """

    section_channels: ClassVar[tuple[int, ...]] = (16, 32, 32)
    features: ClassVar[int] = 256

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps images ``[B, H, W, C]`` float32 to ``[B, 256]`` float32."""
        chex.assert_rank(x, 4)
        x = x.astype(jnp.float32)
        for i, channels in enumerate(self.section_channels, start=1):
            section = _ImpalaSection(
                channels, self.normalize, self.normalization, name=f"section{i}"
            )
            x = section(x, train=train)
        x = flatten_chw(nn.relu(x))
        linear = torch_dense(self.features, x.shape[-1], use_bias=self.use_bias, name="linear")
        x = linear(x)
        if self.normalize:
            x = self.norm("bn_linear")(x, train=train)
        return nn.relu(x)

    @classmethod
    def output_size(cls, height: int, width: int) -> int:
        """Always 256 (the final Dense layer)."""
        del height, width
        return cls.features
