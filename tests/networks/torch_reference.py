"""Reference ``torch.nn`` twins of fnrl's networks, written from adept's PyTorch code.

Module and parameter names follow fnrl's flax names (``trunk_<key>``, ``body``, ``head_<name>``,
``critic``; inside them adept's own names), which ``fnrl.networks.torch_interop`` maps to.
Images enter channels-last like fnrl's and are permuted to NCHW here. Where fnrl departs from
adept on purpose (the RMC core, FourConvSpatialAttention's grid size, ResNet50's blocks) the
twin implements fnrl's documented behaviour.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

RELU_GAIN = nn.init.calculate_gain("relu")


def _scale_conv_weights(module: nn.Module) -> None:
    """adept multiplies its trunk conv weights by the ReLU gain."""
    with torch.no_grad():
        for m in module.children():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(RELU_GAIN)


class ConvTrunk(nn.Module):
    """adept's FourConv / FourConvLarger / Nature / Mnih2013 and MinAtar's: (conv → BN → ReLU) × n,
    flatten."""

    def __init__(self, in_channels, layers, normalize):
        super().__init__()
        self.count, self.normalize = len(layers), normalize
        for i, (out, kernel, stride, padding) in enumerate(layers, start=1):
            conv = nn.Conv2d(in_channels, out, kernel, stride, padding, bias=not normalize)
            self.add_module(f"conv{i}", conv)
            if normalize:
                self.add_module(f"bn{i}", nn.BatchNorm2d(out))
            in_channels = out
        _scale_conv_weights(self)

    def forward(self, x):
        for i in range(1, self.count + 1):
            x = getattr(self, f"conv{i}")(x)
            if self.normalize:
                x = getattr(self, f"bn{i}")(x)
            x = F.relu(x)
        return x.flatten(1)


CONV_LAYERS = {
    "FourConv": ((32, 7, 2, 1), (32, 3, 2, 1), (32, 3, 2, 1), (32, 3, 2, 1)),
    "FourConvLarger": ((32, 7, 2, 1), (64, 3, 2, 1), (64, 3, 2, 1), (128, 3, 2, 1)),
    "Nature": ((32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0)),
    "Mnih2013": ((16, 8, 4, 0), (32, 4, 2, 0)),
    "MinAtar": ((16, 3, 1, 0),),
}


class MultiHeadSelfAttention(nn.Module):
    """adept's MultiHeadSelfAttention; the causal mask is built per call (not a buffer)."""

    def __init__(self, in_features, qk_features, v_features, num_heads, causal=True, scale=False):
        super().__init__()
        self.num_heads, self.split_size = num_heads, qk_features
        self.causal, self.scale = causal, scale
        self.qk_projection = nn.Linear(in_features, qk_features * 2)
        self.v_projection = nn.Linear(in_features, v_features)

    def _split(self, x, k=False):
        x = x.view(*x.size()[:-1], self.num_heads, x.size(-1) // self.num_heads)
        return x.permute(0, 2, 3, 1) if k else x.permute(0, 2, 1, 3)

    def forward(self, x):
        query, key = self.qk_projection(x).split(self.split_size, dim=2)
        value = self._split(self.v_projection(x))
        w = torch.matmul(self._split(query), self._split(key, k=True))
        if self.scale:
            w = w / math.sqrt(value.size(-1))
        if self.causal:
            n = w.size(-1)
            b = torch.tril(torch.ones(n, n, dtype=w.dtype)).view(1, 1, n, n)
            w = w * b + -1e9 * (1 - b)
        a = torch.matmul(torch.softmax(w, dim=-1), value)
        a = a.permute(0, 2, 1, 3).contiguous()
        return a.view(*a.size()[:-2], a.size(-2) * a.size(-1))


class RelationalMHDPA(nn.Module):
    """adept's RelationalMHDPA (without its debugging print)."""

    def __init__(self, channels, num_heads, scale=False, causal=True):
        super().__init__()
        self.num_heads, self.split_size, self.scale, self.causal = (
            num_heads,
            channels,
            scale,
            causal,
        )
        self.projection = nn.Linear(channels, channels * 3)
        self.mlp = nn.Linear(channels, channels)

    def _split(self, x, k=False):
        x = x.view(*x.size()[:-1], self.num_heads, x.size(-1) // self.num_heads)
        return x.permute(0, 2, 3, 1) if k else x.permute(0, 2, 1, 3)

    def forward(self, x):
        query, key, value = self.projection(x).split(self.split_size, dim=2)
        value = self._split(value)
        w = torch.matmul(self._split(query), self._split(key, k=True))
        if self.scale:
            w = w / math.sqrt(value.size(-1))
        if self.causal:
            n = w.size(-1)
            b = torch.tril(torch.ones(n, n, dtype=w.dtype)).view(1, 1, n, n)
            w = w * b + -1e9 * (1 - b)
        a = torch.matmul(torch.softmax(w, dim=-1), value).permute(0, 2, 1, 3).contiguous()
        return self.mlp(a.view(*a.size()[:-2], a.size(-2) * a.size(-1)))


class FourConvSpatialAttention(nn.Module):
    """adept's FourConvSpatialAttention with the attention grid sized from the input."""

    def __init__(self, in_channels, nb_head, normalize):
        super().__init__()
        bias, self.normalize = not normalize, normalize
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=bias)
        self.attention = MultiHeadSelfAttention(34, 34, 34, nb_head)
        self.mlp = nn.Linear(34, 34)
        self.conv3 = nn.Conv2d(34, 32, 3, stride=2, padding=1, bias=bias)
        self.conv4 = nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=bias)
        if normalize:
            self.bn1, self.bn2 = nn.BatchNorm2d(32), nn.BatchNorm2d(32)
            self.bn3, self.bn4 = nn.BatchNorm2d(32), nn.BatchNorm2d(32)
        _scale_conv_weights(self)

    def _block(self, i, x):
        x = getattr(self, f"conv{i}")(x)
        if self.normalize:
            x = getattr(self, f"bn{i}")(x)
        return F.relu(x)

    def forward(self, x):
        x = self._block(2, self._block(1, x))
        b, _, h, w = x.shape
        xs = torch.linspace(-1, 1, w, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        ys = torch.linspace(-1, 1, h, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        x = torch.cat([x, xs, ys], dim=1)
        c = x.size(1)
        x = x.view(b, c, h * w).transpose(1, 2)
        x = F.relu(self.mlp(self.attention(x.contiguous())))
        x = x.transpose(1, 2).reshape(b, c, h, w)
        return self._block(4, self._block(3, x)).flatten(1)


# adept's _resnets.py (torchvision's ResNet blocks).
def _conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class BasicBlockV2(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inplanes), _conv3x3(inplanes, planes, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), _conv3x3(planes, planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.conv1(self.bn1(x)))
        out = F.relu(self.conv2(self.bn2(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return out + residual


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class BottleneckV2(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return out + residual


class ResNetStages(nn.Module):
    def __init__(self, block, layer_sizes):
        super().__init__()
        self.inplanes = 64
        for i, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), layer_sizes, strict=True), start=1
        ):
            self.add_module(
                f"layer{i}", self._make_layer(block, planes, blocks, 1 if i == 1 else 2)
            )
        self.avgpool = nn.AvgPool2d(5, stride=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.avgpool(x)


RESNETS = {
    "ResNet18": (BasicBlock, (2, 2, 2, 2)),
    "ResNet18V2": (BasicBlockV2, (2, 2, 2, 2)),
    "ResNet34": (BasicBlock, (3, 4, 6, 3)),
    "ResNet34V2": (BasicBlockV2, (3, 4, 6, 3)),
    "ResNet50": (Bottleneck, (3, 4, 6, 3)),
    "ResNet50V2": (BottleneckV2, (3, 4, 6, 3)),
    "ResNet101": (Bottleneck, (3, 4, 23, 3)),
    "ResNet101V2": (BottleneckV2, (3, 4, 23, 3)),
    "ResNet152": (Bottleneck, (3, 8, 36, 3)),
    "ResNet152V2": (BottleneckV2, (3, 8, 36, 3)),
}


class BaseResNet(nn.Module):
    """adept's BaseResNet: stem conv 64 7x7/2 pad 1 (→ BN) → ReLU, ResNet stages, flatten."""

    def __init__(self, in_channels, name, normalize):
        super().__init__()
        self.normalize = normalize
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=1, bias=not normalize)
        with torch.no_grad():
            self.conv1.weight.mul_(RELU_GAIN)
        if normalize:
            self.bn1 = nn.BatchNorm2d(64)
        self.resnet = ResNetStages(*RESNETS[name])

    def forward(self, x):
        x = self.conv1(x)
        if self.normalize:
            x = self.bn1(x)
        return self.resnet(F.relu(x)).flatten(1)


class ImpalaResidual(nn.Module):
    def __init__(self, channels, normalize):
        super().__init__()
        self.normalize = normalize
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not normalize)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not normalize)
        if normalize:
            self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)

    def forward(self, x):
        out = x
        for i in (1, 2):
            out = getattr(self, f"conv{i}")(F.relu(out))
            if self.normalize:
                out = getattr(self, f"bn{i}")(out)
        return x + out


class ImpalaSection(nn.Module):
    def __init__(self, in_channels, channels, normalize):
        super().__init__()
        self.normalize = normalize
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1, bias=not normalize)
        if normalize:
            self.bn = nn.BatchNorm2d(channels)
        self.res1 = ImpalaResidual(channels, normalize)
        self.res2 = ImpalaResidual(channels, normalize)

    def forward(self, x):
        x = self.conv(x)
        if self.normalize:
            x = self.bn(x)
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        return self.res2(self.res1(x))


class Impala(nn.Module):
    """Espeholt et al. 2018's deep torso: 3 sections (16, 32, 32), ReLU, Linear(256), ReLU."""

    def __init__(self, in_channels, height, width, normalize):
        super().__init__()
        self.normalize = normalize
        for i, channels in enumerate((16, 32, 32), start=1):
            self.add_module(f"section{i}", ImpalaSection(in_channels, channels, normalize))
            in_channels = channels
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        self.linear = nn.Linear(32 * height * width, 256, bias=not normalize)
        if normalize:
            self.bn_linear = nn.BatchNorm1d(256)

    def forward(self, x):
        for i in (1, 2, 3):
            x = getattr(self, f"section{i}")(x)
        x = self.linear(F.relu(x).flatten(1))
        if self.normalize:
            x = self.bn_linear(x)
        return F.relu(x)


def _norm_1d(normalization, width):
    """The normalization after a Linear layer: batch norm, or layer norm for ``"layer"``."""
    return nn.LayerNorm(width) if normalization == "layer" else nn.BatchNorm1d(width)


class LinearTrunk(nn.Module):
    def __init__(self, in_features, normalize, normalization="batch", features=(64, 64)):
        super().__init__()
        self.normalize, self.count = normalize, len(features)
        bias = not normalize or normalization == "layer"
        for i, width in enumerate(features, start=1):
            self.add_module(f"linear{i}", nn.Linear(in_features, width, bias=bias))
            if normalize:
                self.add_module(f"bn{i}", _norm_1d(normalization, width))
            in_features = width

    def forward(self, x):
        for i in range(1, self.count + 1):
            x = getattr(self, f"linear{i}")(x)
            if self.normalize:
                x = getattr(self, f"bn{i}")(x)
            x = F.relu(x)
        return x


class IdentityTrunk(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class LSTMCellLayerNorm(nn.Module):
    """adept's LSTMCellLayerNorm: gates [i, f, o | g], layer-normalized cell carried forward."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.ih = nn.Linear(input_size, 4 * hidden_size)
        self.hh = nn.Linear(hidden_size, 4 * hidden_size)
        with torch.no_grad():
            self.ih.bias.fill_(0)
            self.hh.bias.fill_(0)
        self.ln_cell = nn.LayerNorm(hidden_size)

    def forward(self, x, hidden):
        h, c = hidden
        preact = self.ih(x) + self.hh(h)
        gates = preact[:, : 3 * self.hidden_size].sigmoid()
        g = preact[:, 3 * self.hidden_size :].tanh()
        i, f, o = gates.chunk(3, dim=1)
        c = self.ln_cell(c * f + i * g)
        return o * c.tanh(), c


def _lstm(input_size, hidden_size, normalize):
    if normalize:
        return LSTMCellLayerNorm(input_size, hidden_size)
    cell = nn.LSTMCell(input_size, hidden_size)
    with torch.no_grad():
        cell.bias_ih.fill_(0)
        cell.bias_hh.fill_(0)
    return cell


class IdentityBody(nn.Module):
    width = None

    def initial(self, batch):
        return ()

    def forward(self, carry, x):
        return carry, x


class LinearBody(nn.Module):
    def __init__(self, in_features, width, normalize, bias=None, normalization="batch"):
        super().__init__()
        self.width, self.normalize = width, normalize
        if bias is None:
            bias = not normalize or normalization == "layer"
        self.linear = nn.Linear(in_features, width, bias=bias)
        if normalize:
            self.bn_linear = _norm_1d(normalization, width)

    def initial(self, batch):
        return ()

    def features(self, x):
        x = self.linear(x)
        if self.normalize:
            x = self.bn_linear(x)
        return F.relu(x)

    def forward(self, carry, x):
        return carry, self.features(x)


class LSTMBody(nn.Module):
    def __init__(self, in_features, width, normalize):
        super().__init__()
        self.width = width
        self.lstm = _lstm(in_features, width, normalize)

    def initial(self, batch):
        return (torch.zeros(batch, self.width), torch.zeros(batch, self.width))

    def forward(self, carry, x):
        c, h = carry
        h, c = self.lstm(x, (h, c))
        return (c, h), h


class Mnih2013LSTM(nn.Module):
    """adept's Mnih2013LSTM: Linear(256) with bias → (BN) → ReLU → LSTM cell(256)."""

    def __init__(self, in_features, normalize):
        super().__init__()
        self.width, self.normalize = 256, normalize
        self.linear = nn.Linear(in_features, 256)
        if normalize:
            self.bn_linear = nn.BatchNorm1d(256)
        self.lstm = _lstm(256, 256, normalize)

    def initial(self, batch):
        return (torch.zeros(batch, 256), torch.zeros(batch, 256))

    def forward(self, carry, x):
        x = self.linear(x)
        if self.normalize:
            x = self.bn_linear(x)
        c, h = carry
        h, c = self.lstm(F.relu(x), (h, c))
        return (c, h), h


class RMCCell(nn.Module):
    """The relational memory core as fnrl implements it (see fnrl.networks.modules.memory)."""

    def __init__(self, input_size, mem_slots, head_size, num_heads=1, num_blocks=1, num_mlp=2):
        super().__init__()
        size = head_size * num_heads
        self.mem_slots, self.num_blocks = mem_slots, num_blocks
        self.input_bias, self.forget_bias = 0.0, 1.0
        self.input_linear = nn.Linear(input_size, size)
        self.attention = MultiHeadSelfAttention(
            size, size, size, num_heads, causal=False, scale=True
        )
        self.mlp = nn.ModuleList([nn.Linear(size, size) for _ in range(num_mlp)])
        self.ln1, self.ln2 = nn.LayerNorm(size), nn.LayerNorm(size)
        self.ih, self.hh = nn.Linear(size, 2 * size), nn.Linear(size, 2 * size)
        with torch.no_grad():
            self.ih.bias.fill_(0)
            self.hh.bias.fill_(0)

    def forward(self, memory, x):
        u = self.input_linear(x).unsqueeze(1)
        m = torch.cat([memory, u], dim=1)
        for _ in range(self.num_blocks):
            m = self.ln1(m + self.attention(m))
            mlp = m
            for layer in self.mlp:
                mlp = F.relu(layer(mlp))
            m = self.ln2(mlp + m)
        attended = m[:, : self.mem_slots]
        i, f = (self.ih(u) + self.hh(memory.tanh())).chunk(2, dim=2)
        return (i + self.input_bias).sigmoid() * attended.tanh() + (
            f + self.forget_bias
        ).sigmoid() * memory


class RMCBody(nn.Module):
    def __init__(self, in_features, width, nb_head, mem_slots=4):
        super().__init__()
        self.width, self.mem_slots, self.mem_size = width, mem_slots, width // mem_slots
        self.rmc = RMCCell(in_features, mem_slots, self.mem_size // nb_head, nb_head)

    def initial(self, batch):
        eye = torch.eye(self.mem_slots, self.mem_size)
        return (eye.expand(batch, self.mem_slots, self.mem_size).clone(),)

    def forward(self, carry, x):
        (memory,) = carry
        memory = self.rmc(memory, x)
        return (memory,), memory.flatten(1)


def _feature_size(trunk, shape):
    was_training = trunk.training
    trunk.eval()
    with torch.no_grad():
        size = trunk(torch.zeros(1, *shape)).shape[1]
    trunk.train(was_training)
    return size


def make_vision(name, shape, normalize, nb_head):
    height, width, channels = shape
    if name in CONV_LAYERS:
        return ConvTrunk(channels, CONV_LAYERS[name], normalize)
    if name in RESNETS:
        return BaseResNet(channels, name, normalize)
    if name == "FourConvSpatialAttention":
        return FourConvSpatialAttention(channels, nb_head, normalize)
    if name == "IMPALA":
        return Impala(channels, height, width, normalize)
    raise ValueError(name)


def make_body(name, in_features, hidden_size, normalize, nb_head, normalization="batch"):
    if name == "Identity":
        return IdentityBody()
    if name == "Linear":
        return LinearBody(in_features, hidden_size, normalize, normalization=normalization)
    if name == "Mnih2013Linear":
        return LinearBody(in_features, 256, normalize)
    if name == "LSTM":
        return LSTMBody(in_features, hidden_size, normalize)
    if name == "Mnih2013LSTM":
        return Mnih2013LSTM(in_features, normalize)
    if name == "RMC":
        return RMCBody(in_features, hidden_size, nb_head)
    raise ValueError(name)


class TorchModularNetwork(nn.Module):
    """The twin of ``fnrl.networks.ModularNetwork``: trunks → concat → body → heads + critic."""

    def __init__(
        self,
        spec,
        vision_network="FourConv",
        discrete_network="Identity",
        network_body="LSTM",
        normalize=True,
        hidden_size=512,
        nb_head=1,
        normalization="batch",
    ):
        super().__init__()
        self.obs_keys = sorted(spec.observations)
        self.action_names = sorted(spec.actions)
        width = 0
        for key in self.obs_keys:
            shape = tuple(spec.observations[key].shape)
            if len(shape) == 3:
                assert normalization != "layer", "layer norm is referenced for vectors only"
                trunk = make_vision(vision_network, shape, normalize, nb_head)
                width += _feature_size(trunk, (shape[2], shape[0], shape[1]))
            else:
                if discrete_network == "Linear":
                    trunk = LinearTrunk(shape[0], normalize, normalization)
                else:
                    trunk = IdentityTrunk()
                width += _feature_size(trunk, shape)
            self.add_module(f"trunk_{key}", trunk)
        self.body = make_body(network_body, width, hidden_size, normalize, nb_head, normalization)
        out = width if self.body.width is None else self.body.width
        for name in self.action_names:
            self.add_module(f"head_{name}", nn.Linear(out, spec.actions[name].num_values))
        self.critic = nn.Linear(out, 1)

    def initial_carry(self, batch):
        return self.body.initial(batch)

    def forward(self, carry, obs, first):
        """carry: tuple of tensors; obs: name -> channels-last arrays; first: [B] bool."""
        features = []
        for key in self.obs_keys:
            x = torch.as_tensor(np.asarray(obs[key]))
            dtype = self.critic.weight.dtype  # float32, or float64 for an exact reference
            x = x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
            if x.dim() == 4:
                x = x.permute(0, 3, 1, 2)
            features.append(getattr(self, f"trunk_{key}")(x))
        x = torch.cat(features, dim=1)
        first = torch.as_tensor(np.asarray(first))
        initial = tuple(t.to(x.dtype) for t in self.body.initial(x.shape[0]))
        carry = tuple(t.to(x.dtype) for t in carry)
        carry = tuple(
            torch.where(first.view(-1, *([1] * (c.dim() - 1))), s, c)
            for c, s in zip(carry, initial, strict=True)
        )
        carry, x = self.body(carry, x)
        logits = {name: getattr(self, f"head_{name}")(x) for name in self.action_names}
        return carry, logits, self.critic(x)[:, 0]
