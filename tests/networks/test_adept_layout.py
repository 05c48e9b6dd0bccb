"""adept's own state_dict layout: adept's keys load strictly into fnrl's networks, fnrl → adept
→ fnrl is bit-exact for every network adept had, and bad keys raise naming the key.

The adept state_dicts below are written from adept's 2018 code (``adept/networks/_base.py``:
``ModularNetwork.trunk.pathways.<obs>``, ``.body``, ``.head.heads.<name>``;
``adept/networks/vision/networks.py``, ``_resnets.py``, ``bodies.py``,
``adept/modules/attention.py`` and ``sequence.py``) with torch's shapes.
"""

import jax
import numpy as np
import pytest
from test_torch_interop import make_variables

from fnrl.networks import ModularNetwork
from fnrl.networks.torch_interop import (
    ADEPT_DISCRETE_NETWORKS,
    ADEPT_NETWORK_BODIES,
    ADEPT_VISION_NETWORKS,
    adept_layout,
    fnrl_network_name,
    from_adept_state_dict,
    from_torch_state_dict,
    to_adept_state_dict,
    to_torch_state_dict,
)
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec

torch = pytest.importorskip("torch")

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn(prefix, width):
    """torch.nn.BatchNorm{1,2}d's five entries."""
    return {f"{prefix}.{name}": (width,) if name != "num_batches_tracked" else () for name in BN}


def atari_spec(channels, size=84):
    return EnvSpec(
        observations={"screen": ArraySpec((size, size, channels), np.dtype(np.uint8))},
        actions={"action": DiscreteSpec(6)},
    )


# adept's defaults on Pong: FourConv (normalize) + LSTM body (LSTMCellLayerNorm, 512), one frame.
ADEPT_FOUR_CONV_LSTM = {
    "trunk.pathways.Box.conv1.weight": (32, 1, 7, 7),
    "trunk.pathways.Box.conv2.weight": (32, 32, 3, 3),
    "trunk.pathways.Box.conv3.weight": (32, 32, 3, 3),
    "trunk.pathways.Box.conv4.weight": (32, 32, 3, 3),
    **bn("trunk.pathways.Box.bn1", 32),
    **bn("trunk.pathways.Box.bn2", 32),
    **bn("trunk.pathways.Box.bn3", 32),
    **bn("trunk.pathways.Box.bn4", 32),
    "body.lstm.ih.weight": (2048, 800),
    "body.lstm.ih.bias": (2048,),
    "body.lstm.hh.weight": (2048, 512),
    "body.lstm.hh.bias": (2048,),
    "body.lstm.ln_cell.weight": (512,),
    "body.lstm.ln_cell.bias": (512,),
    "head.heads.Discrete.weight": (6, 512),
    "head.heads.Discrete.bias": (6,),
    "head.heads.critic.weight": (1, 512),
    "head.heads.critic.bias": (1,),
}

# Nature without normalize (conv biases, no BN) + LSTM body as torch.nn.LSTMCell.
ADEPT_NATURE_LSTM_CELL = {
    "trunk.pathways.Box.conv1.weight": (32, 1, 8, 8),
    "trunk.pathways.Box.conv1.bias": (32,),
    "trunk.pathways.Box.conv2.weight": (64, 32, 4, 4),
    "trunk.pathways.Box.conv2.bias": (64,),
    "trunk.pathways.Box.conv3.weight": (64, 64, 3, 3),
    "trunk.pathways.Box.conv3.bias": (64,),
    "body.lstm.weight_ih": (2048, 3136),
    "body.lstm.weight_hh": (2048, 512),
    "body.lstm.bias_ih": (2048,),
    "body.lstm.bias_hh": (2048,),
    "head.heads.Discrete.weight": (6, 512),
    "head.heads.Discrete.bias": (6,),
    "head.heads.critic.weight": (1, 512),
    "head.heads.critic.bias": (1,),
}

# FourConvSpatialAttention on 80x80 (adept's hard-coded 20x20 attention grid) + Linear body:
# MultiHeadSelfAttention(20 * 20, 34, 34, nb_head) registers the causal mask buffer ``b``.
ADEPT_SPATIAL_ATTENTION_LINEAR = {
    "trunk.pathways.Box.conv1.weight": (32, 4, 3, 3),
    "trunk.pathways.Box.conv2.weight": (32, 32, 3, 3),
    "trunk.pathways.Box.attention.b": (1, 1, 400, 400),
    "trunk.pathways.Box.attention.qk_projection.weight": (68, 34),
    "trunk.pathways.Box.attention.qk_projection.bias": (68,),
    "trunk.pathways.Box.attention.v_projection.weight": (34, 34),
    "trunk.pathways.Box.attention.v_projection.bias": (34,),
    "trunk.pathways.Box.mlp.weight": (34, 34),
    "trunk.pathways.Box.mlp.bias": (34,),
    "trunk.pathways.Box.conv3.weight": (32, 34, 3, 3),
    "trunk.pathways.Box.conv4.weight": (32, 32, 3, 3),
    **bn("trunk.pathways.Box.bn1", 32),
    **bn("trunk.pathways.Box.bn2", 32),
    **bn("trunk.pathways.Box.bn3", 32),
    **bn("trunk.pathways.Box.bn4", 32),
    "body.linear.weight": (512, 800),
    **bn("body.bn_linear", 512),
    "head.heads.Discrete.weight": (6, 512),
    "head.heads.Discrete.bias": (6,),
    "head.heads.critic.weight": (1, 512),
    "head.heads.critic.bias": (1,),
}


def adept_resnet50(prefix="trunk.pathways.Box"):
    """adept's ``ResNet50`` (``BaseResNet`` stem + ``resnet50v2()``: ``BottleneckV2`` blocks
    (3, 4, 6, 3), widths 64..512, expansion 4) with normalize, four frames, as adept's
    ``ResNet._make_layer`` names them."""
    keys = {f"{prefix}.conv1.weight": (64, 4, 7, 7), **bn(f"{prefix}.bn1", 64)}
    inplanes = 64
    for stage, (planes, blocks) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), start=1
    ):
        for block in range(blocks):
            p = f"{prefix}._resnet.layer{stage}.{block}"
            keys |= bn(f"{p}.bn1", inplanes)
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            keys |= bn(f"{p}.bn2", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys |= bn(f"{p}.bn3", planes)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            if block == 0:  # stride 2, or 64 -> 256 channels in layer1
                keys[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                keys |= bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    return keys


ADEPT_RESNET50_LINEAR = {
    **adept_resnet50(),
    "body.linear.weight": (512, 2048),
    **bn("body.bn_linear", 512),
    "head.heads.Discrete.weight": (6, 512),
    "head.heads.Discrete.bias": (6,),
    "head.heads.critic.weight": (1, 512),
    "head.heads.critic.bias": (1,),
}


def random_state_dict(shapes, seed=0):
    """Tensors of adept's shapes: positive running variances, integral counts, causal masks."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(int(rng.integers(1, 1000)), dtype=torch.int64)
        elif key.endswith("attention.b"):
            out[key] = torch.tril(torch.ones(shape[-2:])).view(shape)
        elif key.endswith("running_var"):
            out[key] = torch.from_numpy(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
            out[key] = torch.from_numpy(0.05 * rng.normal(size=shape).astype(np.float32))
    return out


def fnrl_key(adept_key):
    """fnrl's own layout for the same tensor, renamed by hand."""
    for adept, fnrl in (
        ("trunk.pathways.Box.", "trunk_screen."),
        ("head.heads.Discrete.", "head_action."),
        ("head.heads.critic.", "critic."),
    ):
        if adept_key.startswith(adept):
            adept_key = fnrl + adept_key[len(adept) :]
    return adept_key.replace("._resnet.", ".resnet.")


def outputs(network, variables, seed=0, batch=1):
    obs = {
        key: np.random.default_rng(seed).integers(0, 256, (batch, *spec.shape)).astype(np.uint8)
        for key, spec in network.spec.observations.items()
    }
    carry = network.initial_carry(batch)
    carry, out = network.apply(variables, carry, obs, np.ones(batch, bool), train=False)
    return [*(out.logits[k] for k in sorted(out.logits)), out.value, *jax.tree.leaves(carry)]


def check_adept_state_dict_loads(shapes, network):
    state_dict = random_state_dict(shapes)
    variables = from_adept_state_dict(state_dict, network)
    # The same tensors through fnrl's own layout give the same variables and outputs.
    own = from_torch_state_dict(
        {fnrl_key(k): v for k, v in state_dict.items() if not k.endswith("attention.b")}, network
    )
    jax.tree.map(np.testing.assert_array_equal, variables, own)
    for ours, theirs in zip(outputs(network, variables), outputs(network, own), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # ...and write back to adept's exact keys, shapes, dtypes and values.
    back = to_adept_state_dict(variables, network)
    assert sorted(back) == sorted(state_dict)
    for key, tensor in state_dict.items():
        assert back[key].dtype == tensor.dtype, key
        assert back[key].shape == tensor.shape, key
        torch.testing.assert_close(back[key], tensor, rtol=0, atol=0, msg=key)
    return variables


def test_adept_four_conv_lstm_state_dict_loads_with_pongs_parameter_count():
    network = ModularNetwork(atari_spec(1))  # adept's defaults: FourConv + LSTM, normalize
    variables = check_adept_state_dict_loads(ADEPT_FOUR_CONV_LSTM, network)
    # adept printed 2,725,159 parameters for this network on Pong (buffers not counted).
    assert sum(np.size(p) for p in jax.tree.leaves(variables["params"])) == 2_725_159


def test_adept_nature_with_torch_lstm_cell_state_dict_loads():
    network = ModularNetwork(
        atari_spec(1), vision_network="Nature", network_body="LSTM", normalize=False
    )
    check_adept_state_dict_loads(ADEPT_NATURE_LSTM_CELL, network)


def test_adept_spatial_attention_state_dict_loads_with_its_mask_buffer():
    network = ModularNetwork(
        atari_spec(4, size=80), vision_network="FourConvSpatialAttention", network_body="Linear"
    )
    check_adept_state_dict_loads(ADEPT_SPATIAL_ATTENTION_LINEAR, network)


def test_adept_resnet50_state_dict_loads_into_fnrl_resnet50v2():
    assert fnrl_network_name("ResNet50") == "ResNet50V2"
    # 53 BatchNorms and 53 convs in the trunk, the body's Linear and BatchNorm, two heads.
    assert len(ADEPT_RESNET50_LINEAR) == 5 * (53 + 1) + 53 + 1 + 2 * 2
    network = ModularNetwork(
        atari_spec(4), vision_network=fnrl_network_name("ResNet50"), network_body="Linear"
    )
    check_adept_state_dict_loads(ADEPT_RESNET50_LINEAR, network)


def test_fnrl_resnet50_which_adept_did_not_have_is_refused():
    network = ModularNetwork(atari_spec(4), vision_network="ResNet50", network_body="Linear")
    with pytest.raises(ValueError, match="vision_network='ResNet50V2'"):
        from_adept_state_dict(random_state_dict(ADEPT_RESNET50_LINEAR), network)
    with pytest.raises(ValueError, match="post-activation"):
        adept_layout(network)


def check_round_trip(network):
    variables = make_variables(network)
    state_dict = to_adept_state_dict(variables, network)
    own = to_torch_state_dict(variables, network)
    masks = {k for k in state_dict if k.endswith(".b")}
    assert len(state_dict) == len(own) + len(masks)
    assert not any(k.startswith(("trunk_", "head_", "critic")) for k in state_dict)
    back = from_adept_state_dict(state_dict, network)
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    jax.tree.map(np.testing.assert_array_equal, back, variables)


DEEP_RESNETS = {"ResNet101", "ResNet101V2", "ResNet152", "ResNet152V2"}


def check_vision_round_trip(adept_name, normalize):
    network = ModularNetwork(
        atari_spec(4),
        vision_network=fnrl_network_name(adept_name),
        network_body="Linear",
        normalize=normalize,
    )
    check_round_trip(network)


@pytest.mark.parametrize("adept_name", sorted(set(ADEPT_VISION_NETWORKS) - DEEP_RESNETS))
def test_round_trip_through_adepts_layout_is_bit_exact_for_every_adept_vision_network(adept_name):
    check_vision_round_trip(adept_name, normalize=True)


@pytest.mark.slow
@pytest.mark.parametrize("adept_name", sorted(DEEP_RESNETS))
def test_round_trip_through_adepts_layout_is_bit_exact_for_the_deep_resnets(adept_name):
    check_vision_round_trip(adept_name, normalize=True)


@pytest.mark.parametrize(
    "adept_name", ["FourConv", "FourConvSpatialAttention", "Nature", "ResNet18", "ResNet50V2"]
)
def test_round_trip_through_adepts_layout_is_bit_exact_without_normalize(adept_name):
    check_vision_round_trip(adept_name, normalize=False)


@pytest.mark.parametrize("adept_name", sorted(ADEPT_NETWORK_BODIES))
@pytest.mark.parametrize("normalize", [True, False])
def test_round_trip_through_adepts_layout_is_bit_exact_for_every_adept_body(adept_name, normalize):
    body = fnrl_network_name(adept_name, "body")
    vision = "Mnih2013" if adept_name.startswith("Mnih2013") else "FourConv"
    network = ModularNetwork(
        atari_spec(1), vision_network=vision, network_body=body, normalize=normalize
    )
    check_round_trip(network)


def test_dict_observations_and_actions_keep_their_names_through_the_identity_pathway():
    assert (
        fnrl_network_name("Identity", "discrete")
        == "Identity"
        == ADEPT_DISCRETE_NETWORKS["Identity"]
    )
    spec = EnvSpec(
        observations={
            "screen": ArraySpec((84, 84, 1), np.dtype(np.uint8)),
            "player": ArraySpec((11,), np.dtype(np.float32)),
        },
        actions={"fn": DiscreteSpec(5), "x": DiscreteSpec(3)},
    )
    network = ModularNetwork(spec, network_body="LSTM", hidden_size=16)
    keys = set(adept_layout(network).values())
    assert {
        "trunk.pathways.screen.conv1.weight",
        "head.heads.fn.weight",
        "head.heads.x.bias",
        "head.heads.critic.weight",
    } <= keys
    assert not any(k.startswith("trunk.pathways.player") for k in keys)  # Identity: no weights
    check_round_trip(network)
    renamed = adept_layout(network, action_names={"fn": "function"})
    assert "head.heads.function.weight" in renamed.values()


def test_unknown_missing_and_misshapen_keys_raise_naming_the_key():
    network = ModularNetwork(atari_spec(1))
    state_dict = random_state_dict(ADEPT_FOUR_CONV_LSTM)
    missing = dict(state_dict)
    del missing["head.heads.critic.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['head.heads.critic.bias'\]"):
        from_adept_state_dict(missing, network)
    extra = {**state_dict, "trunk.pathways.Box.conv5.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys \['trunk.pathways.Box.conv5.weight'\]"):
        from_adept_state_dict(extra, network)
    # fnrl's own layout is not adept's: every key is named as missing or unexpected.
    own = to_torch_state_dict(from_adept_state_dict(state_dict, network), network)
    with pytest.raises(ValueError, match=r"unexpected keys \[.*'trunk_screen.conv1.weight'"):
        from_adept_state_dict(own, network)
    wrong = {**state_dict, "head.heads.Discrete.weight": torch.zeros(4, 512)}
    with pytest.raises(
        ValueError, match=r"state_dict\['head.heads.Discrete.weight'\].*\(4, 512\).*\(6, 512\)"
    ):
        from_adept_state_dict(wrong, network)
    with pytest.raises(ValueError, match="observation_names names 'pixels'"):
        adept_layout(network, observation_names={"pixels": "Box"})
    with pytest.raises(ValueError, match="adept had no vision network 'IMPALA'"):
        fnrl_network_name("IMPALA")


def test_a_wrong_attention_mask_raises_naming_the_key():
    network = ModularNetwork(
        atari_spec(4, size=80), vision_network="FourConvSpatialAttention", network_body="Linear"
    )
    state_dict = random_state_dict(ADEPT_SPATIAL_ATTENTION_LINEAR)
    key = "trunk.pathways.Box.attention.b"
    for bad in (torch.ones(1, 1, 400, 400), torch.tril(torch.ones(1, 1, 441, 441))):
        with pytest.raises(ValueError, match=rf"state_dict\['{key}'\].*causal"):
            from_adept_state_dict({**state_dict, key: bad}, network)
