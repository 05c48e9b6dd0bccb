"""The vision zoo: pinned feature and parameter counts for 84x84 Atari frames, ResNet inits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.network_list import network_params
from fnrl.networks import (
    IMPALA,
    VISION_NETWORKS,
    FourConvSpatialAttention,
    ModularNetwork,
    ResNet18,
    ResNet50,
    count_params,
)
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec

# name: (features, trunk params with normalize on 84x84x4, whole network with the LSTM body on
# 84x84x1 frames and Pong's 6 actions). Cross-checked against the torch twins'
# ``parameters()`` in test_torch_interop.py and, for the ResNets, against torchvision's
# published counts minus their stem and classifier (ResNet18 11,689,512 - 513,000 - 9,536).
PINNED = {
    "FourConv": (800, 34_176, 2_725_159),  # adept's printed Pong count
    "FourConvLarger": (3_200, 135_872, 7_742_055),
    "FourConvSpatialAttention": (1_152, 34_392, 3_450_111),
    "IMPALA": (256, 1_089_888, 2_671_031),
    "MinAtar": (107_584, 608, 221_389_495),  # made for 10x10 boards: 1,024 there
    "Mnih2013": (2_592, 12_384, 6_375_015),
    "Nature": (3_136, 78_144, 7_551_815),
    "ResNet18": (512, 11_179_648, 13_276_103),
    "ResNet18V2": (512, 11_178_752, 13_275_207),
    "ResNet34": (512, 21_287_808, 23_384_263),
    "ResNet34V2": (512, 21_286_912, 23_383_367),
    "ResNet50": (2_048, 23_511_168, 28_753_351),
    "ResNet50V2": (2_048, 23_507_200, 28_749_383),
    "ResNet101": (2_048, 42_503_296, 47_745_479),
    "ResNet101V2": (2_048, 42_499_328, 47_741_511),
    "ResNet152": (2_048, 58_146_944, 63_389_127),
    "ResNet152V2": (2_048, 58_142_976, 63_385_159),
}
TORCHVISION = {"ResNet18": 11_689_512, "ResNet50": 25_557_032, "ResNet152": 60_192_808}


def atari_spec(channels):
    return EnvSpec(
        observations={"screen": ArraySpec((84, 84, channels), np.dtype(np.uint8))},
        actions={"action": DiscreteSpec(6)},
    )


def test_every_registered_vision_network_is_pinned():
    assert set(PINNED) == set(VISION_NETWORKS)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_feature_and_parameter_counts_for_atari_frames(name):
    features, trunk_params, lstm_network = PINNED[name]
    trunk_cls = VISION_NETWORKS[name]
    x = jax.ShapeDtypeStruct((2, 84, 84, 4), jnp.float32)
    out, variables = jax.eval_shape(
        lambda x: trunk_cls().init_with_output(jax.random.key(0), x, train=False), x
    )
    assert out.shape == (2, features) and out.dtype == jnp.float32
    assert trunk_cls.output_size(84, 84) == features
    assert count_params(variables["params"]) == trunk_params
    network = ModularNetwork(atari_spec(1), vision_network=name)
    assert network_params(network)["total"] == lstm_network
    # The LSTM network sees 1 frame where the trunk count above saw 4: its first conv has 3
    # input channels fewer. Then adept's LSTMCellLayerNorm(features, 512) and the two heads.
    out_channels, kernel = FIRST_CONV.get(name, (64, 7))
    one_frame_trunk = trunk_params - 3 * kernel * kernel * out_channels
    lstm = (features * 2048 + 2048) + (512 * 2048 + 2048) + 2 * 512
    heads = (512 * 6 + 6) + (512 + 1)
    assert lstm_network == one_frame_trunk + lstm + heads


FIRST_CONV = {  # (out channels, kernel) of each trunk's first conv; ResNets: (64, 7)
    "FourConv": (32, 7),
    "FourConvLarger": (32, 7),
    "FourConvSpatialAttention": (32, 3),
    "IMPALA": (16, 3),
    "MinAtar": (16, 3),
    "Mnih2013": (16, 8),
    "Nature": (32, 8),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_resnets_are_torchvision_resnets_without_stem_and_classifier(name):
    torchvision_total = TORCHVISION[name]
    fc = 512 * (4 if name != "ResNet18" else 1) * 1000 + 1000
    torchvision_stem = 7 * 7 * 3 * 64 + 2 * 64
    adept_stem = 7 * 7 * 4 * 64 + 2 * 64  # 4 frames, no bias, BatchNorm
    assert PINNED[name][1] == torchvision_total - fc - torchvision_stem + adept_stem


def test_too_small_images_raise():
    with pytest.raises(ValueError, match="too small"):
        ResNet18.output_size(64, 84)
    assert ResNet18.output_size(72, 72) == 512  # 72 → 34 → 34, 17, 9, 5 → pooled 1x1
    with pytest.raises(ValueError, match="too small"):
        FourConvSpatialAttention.output_size(0, 8)
    assert IMPALA.output_size(40, 40) == 256


def test_resnet_stage_convs_use_kaiming_normal_fan_out_and_the_stem_adepts_init():
    x = jnp.zeros((1, 84, 84, 4))
    variables = jax.jit(lambda x: ResNet50().init(jax.random.key(0), x, train=False))(x)
    params = variables["params"]
    kernel = np.asarray(params["resnet"]["layer3"]["2"]["conv2"]["kernel"])  # 3x3, 256 → 256
    assert kernel.shape == (3, 3, 256, 256)
    np.testing.assert_allclose(kernel.std(), math.sqrt(2 / (256 * 9)), rtol=0.02)
    assert abs(kernel.mean()) < 0.01 * kernel.std()
    stem = np.asarray(params["conv1"]["kernel"])
    bound = math.sqrt(2) / math.sqrt(7 * 7 * 4)  # torch default times the ReLU gain
    assert np.abs(stem).max() <= bound and np.abs(stem).max() > 0.9 * bound
    assert "bias" not in params["conv1"]  # normalize: BatchNorm follows
    for leaf in jax.tree.leaves(params["resnet"]["layer1"]["0"]["downsample"]["1"]):
        assert leaf.shape == (256,)
