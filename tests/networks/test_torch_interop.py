"""PyTorch weight parity: every network against its torch.nn twin, both directions, bit-exact
round trips, batch-norm running statistics included."""

import copy
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.networks import (
    OBS_STATS,
    ModularNetwork,
    MultiHeadSelfAttention,
    RelationalMHDPA,
    RMCCell,
    RunningMoments,
    zscore_normalize,
)
from fnrl.networks.modular import count_params
from fnrl.networks.torch_interop import from_torch_state_dict, to_torch_state_dict, torch_layout
from fnrl.specs import ArraySpec, BoxSpec, DiscreteSpec, EnvSpec

torch = pytest.importorskip("torch")
ref = pytest.importorskip("torch_reference")
TorchModularNetwork = ref.TorchModularNetwork

B = 3
FAST_VISION = [
    "FourConv",
    "FourConvLarger",
    "FourConvSpatialAttention",
    "IMPALA",
    "MinAtar",
    "Mnih2013",
    "Nature",
    "ResNet18",
    "ResNet18V2",
]
SLOW_VISION = [
    "ResNet34",
    "ResNet34V2",
    "ResNet50",
    "ResNet50V2",
    "ResNet101",
    "ResNet101V2",
    "ResNet152",
    "ResNet152V2",
]
BODIES = ["Identity", "Linear", "LSTM", "Mnih2013Linear", "Mnih2013LSTM", "RMC"]


def atari_spec(channels):
    return EnvSpec(
        observations={"screen": ArraySpec((84, 84, channels), np.dtype(np.uint8))},
        actions={"action": DiscreteSpec(6)},
    )


MIXED_SPEC = EnvSpec(
    observations={
        "screen": ArraySpec((84, 84, 1), np.dtype(np.uint8)),
        "player": ArraySpec((11,), np.dtype(np.float32)),
    },
    actions={"fn": DiscreteSpec(5), "x": DiscreteSpec(3)},
)


def assert_close(actual, expected, what="", rtol=1e-5):
    """Equal within ``rtol`` relative to the largest magnitude of the reference (float32).

    The floor of 1e-2 on that magnitude keeps the bound meaningful for outputs that cancel to
    nearly zero (the heads sum hundreds of terms of order 0.01 to 1).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(float(np.abs(expected).max()), 1e-2)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def make_twin(network, seed):
    """The torch twin with torch's init and randomized batch-norm state and LSTM biases."""
    torch.manual_seed(seed)
    twin = TorchModularNetwork(
        network.spec,
        network.vision_network,
        network.discrete_network,
        network.network_body,
        network.normalize,
        network.hidden_size,
        network.nb_head,
        network.normalization,
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in twin.state_dict().items():
            if name.endswith("running_mean") or (name.endswith("bias") and tensor.ndim == 1):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(7)
        for module in twin.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d | torch.nn.LayerNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
    return twin


def inputs(network, seed=0):
    rng = np.random.default_rng(seed)
    obs = {}
    for key, spec in network.spec.observations.items():
        if spec.dtype == np.uint8:
            # Envs of distinct brightness: with features that barely differ between envs, batch
            # statistics would turn float32 rounding into large relative differences.
            high = np.linspace(64, 256, B).astype(int).reshape(B, *([1] * len(spec.shape)))
            obs[key] = rng.integers(0, high, (B, *spec.shape)).astype(np.uint8)
        else:
            obs[key] = rng.normal(size=(B, *spec.shape)).astype(np.float32)
    return obs


def run_both(network, variables, twin, *, train, normalization=None):
    """Steps with episode starts [T, F, T] (then [F, T, F] for recurrent bodies) in both.

    Returns the updated variables and, per step, ``(carry, output, torch carry, torch logits,
    torch value)``.
    """
    net = network if normalization is None else network.clone(normalization=normalization)
    twin.train(train)
    carry = net.initial_carry(B)
    tcarry = tuple(torch.from_numpy(np.array(leaf)) for leaf in jax.tree.leaves(carry))
    results = []
    firsts = [np.array([1, 0, 1], bool), np.array([0, 1, 0], bool)][: 2 if net.recurrent else 1]
    for step, first in enumerate(firsts):
        obs = inputs(net, seed=step)
        if train:
            (carry, out), updates = net.apply(
                variables, carry, obs, first, train=True, mutable=["batch_stats"]
            )
            variables = {**variables, **updates}
        else:
            carry, out = net.apply(variables, carry, obs, first, train=False)
        with torch.no_grad():
            tcarry, tlogits, tvalue = twin(tcarry, obs, first)
        results.append((carry, out, tcarry, tlogits, tvalue))
    return variables, results


def _arrays(result):
    carry, out, tcarry, tlogits, tvalue = result
    ours = [*(out.logits[k] for k in sorted(out.logits)), out.value, *jax.tree.leaves(carry)]
    theirs = [*(tlogits[k] for k in sorted(tlogits)), tvalue, *tcarry]
    return [np.asarray(a) for a in ours], [t.numpy() for t in theirs]


def check_outputs(results):
    for result in results:
        for ours, theirs in zip(*_arrays(result), strict=True):
            assert_close(ours, theirs)


def check_as_exact_as_torch(results, exact_results):
    """fnrl (float32) is within 1e-5 of torch (float32), or at most 3x as far from a float64
    torch run as torch's float32 run is: batch statistics over B=3 envs divide by small
    standard deviations, which magnifies float32 rounding in deep trunks for any
    implementation."""
    for result, exact in zip(results, exact_results, strict=True):
        ours, torch32 = _arrays(result)
        _, torch64 = _arrays(exact)
        for a, b, c in zip(ours, torch32, torch64, strict=True):
            check_as_exact_as_torch_arrays(a, b, c)


def check_as_exact_as_torch_arrays(ours, torch32, torch64):
    ours, torch32, torch64 = (np.asarray(x, np.float64) for x in (ours, torch32, torch64))
    scale = max(float(np.abs(torch64).max()), 1e-2)
    if np.abs(ours - torch32).max() <= 1e-5 * scale:
        return
    ours_error, torch_error = np.abs(ours - torch64).max(), np.abs(torch32 - torch64).max()
    assert ours_error <= 3 * torch_error + 1e-6 * scale, (ours_error, torch_error)


def perturb(variables, seed):
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    out = []
    for key, leaf in zip(keys, leaves, strict=True):
        if leaf.ndim == 0:  # batch-norm update counts stay integral
            out.append(leaf + 3.0)
        else:
            out.append(leaf * (1.0 + 0.05 * jax.random.normal(key, leaf.shape)))
    return jax.tree.unflatten(treedef, out)


def check_network(network):
    # torch -> fnrl: the twin's own weights, loaded into fnrl, give the twin's outputs.
    twin = make_twin(network, seed=0)
    assert count_params(from_torch_state_dict(twin.state_dict(), network)["params"]) == sum(
        p.numel() for p in twin.parameters()
    )
    variables = from_torch_state_dict(twin.state_dict(), network)
    _, results = run_both(network, variables, twin, train=False)
    check_outputs(results)
    if "batch_stats" in variables:
        # Training mode (adept's): batch statistics normalize and the running ones move.
        exact = copy.deepcopy(twin).double()
        updated, results = run_both(network, variables, twin, train=True)
        _, exact_results = run_both(network, variables, exact, train=True)
        check_as_exact_as_torch(results, exact_results)
        twin_stats = from_torch_state_dict(twin.state_dict(), network)["batch_stats"]
        exact_stats = from_torch_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in exact.state_dict().items()},
            network,
        )["batch_stats"]
        for ours, torch32, torch64 in zip(
            *(jax.tree.leaves(t) for t in (updated["batch_stats"], twin_stats, exact_stats)),
            strict=True,
        ):
            check_as_exact_as_torch_arrays(ours, torch32, torch64)
        moved = jax.tree.map(
            lambda a, b: not np.allclose(a, b), updated["batch_stats"], variables["batch_stats"]
        )
        assert all(jax.tree.leaves(moved))  # every mean, var and count moved, as torch's did

    # fnrl -> torch: other weights written into a fresh twin give fnrl's outputs.
    variables = perturb(variables, seed=1)
    fresh = make_twin(network, seed=2)
    fresh.load_state_dict(to_torch_state_dict(variables, network), strict=True)
    _, results = run_both(network, variables, fresh, train=False)
    check_outputs(results)

    # fnrl -> torch -> fnrl is bit-exact.
    back = from_torch_state_dict(to_torch_state_dict(variables, network), network)
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    jax.tree.map(np.testing.assert_array_equal, back, variables)


@pytest.mark.parametrize("vision", FAST_VISION)
def test_vision_network_matches_its_torch_twin(vision):
    check_network(ModularNetwork(atari_spec(4), vision_network=vision, network_body="Identity"))


@pytest.mark.slow
@pytest.mark.parametrize("vision", SLOW_VISION)
def test_deep_resnet_matches_its_torch_twin(vision):
    check_network(ModularNetwork(atari_spec(4), vision_network=vision, network_body="Identity"))


@pytest.mark.parametrize(
    "vision", ["FourConv", "Nature", "FourConvSpatialAttention", "IMPALA", "ResNet18V2"]
)
def test_vision_network_without_normalize_matches_its_torch_twin(vision):
    network = ModularNetwork(
        atari_spec(4), vision_network=vision, network_body="Identity", normalize=False
    )
    check_network(network)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("body", BODIES)
def test_body_matches_its_torch_twin_across_an_episode_start(body, normalize):
    check_network(
        ModularNetwork(atari_spec(1), network_body=body, normalize=normalize, hidden_size=32)
    )


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("body", ["Identity", "LSTM"])
def test_mixed_image_and_vector_observations_match(body, normalize):
    network = ModularNetwork(
        MIXED_SPEC,
        discrete_network="Linear",
        network_body=body,
        normalize=normalize,
        hidden_size=16,
    )
    check_network(network)


@pytest.mark.parametrize("body", ["Linear", "LSTM"])
def test_layer_normalization_matches_torch_layer_norm(body):
    spec = EnvSpec({"obs": ArraySpec((6,), np.float32)}, {"action": DiscreteSpec(3)})
    network = ModularNetwork(
        spec, discrete_network="Linear", network_body=body, normalization="layer", hidden_size=16
    )
    state_dict = make_twin(network, seed=0).state_dict()
    assert "trunk_obs.bn1.weight" in state_dict and "trunk_obs.linear1.bias" in state_dict
    assert not any("running" in key for key in state_dict)
    check_network(network)


def test_observation_statistics_stay_out_of_the_state_dict_and_are_added_back():
    """The twin sees observations already normalized: without the flag, on zscore'd inputs."""
    network = ModularNetwork(
        MIXED_SPEC,
        discrete_network="Linear",
        network_body="Linear",
        hidden_size=16,
        zscore_norm_env=True,
    )
    twin = make_twin(network.clone(zscore_norm_env=False), seed=0)
    assert set(torch_layout(network)) == set(torch_layout(network.clone(zscore_norm_env=False)))
    variables = from_torch_state_dict(twin.state_dict(), network)
    assert OBS_STATS not in variables
    stats = RunningMoments(
        jnp.linspace(-1.0, 1.0, 11), jnp.linspace(0.5, 2.0, 11), jnp.float32(40.0)
    )
    variables = {**variables, OBS_STATS: {"zscore_player": stats}}
    obs, first = inputs(network), np.ones(B, bool)
    _, out = network.apply(variables, network.initial_carry(B), obs, first, train=False)
    twin.train(False)
    with torch.no_grad():
        _, tlogits, tvalue = twin(
            (), {**obs, "player": np.asarray(zscore_normalize(stats, obs["player"]))}, first
        )
    assert_close(out.value, tvalue.numpy())
    for name in tlogits:
        assert_close(out.logits[name], tlogits[name].numpy())
    state_dict = to_torch_state_dict(variables, network)
    assert not any("zscore" in key for key in state_dict)
    back = from_torch_state_dict(state_dict, network)
    jax.tree.map(
        np.testing.assert_array_equal, {**back, OBS_STATS: variables[OBS_STATS]}, variables
    )


def test_attention_heads_and_rmc_heads_match():
    check_network(
        ModularNetwork(
            atari_spec(1),
            vision_network="FourConvSpatialAttention",
            network_body="RMC",
            nb_head=2,
            hidden_size=32,
        )
    )


def test_running_batch_norm_trains_with_the_running_statistics():
    network = ModularNetwork(atari_spec(4), network_body="Linear", hidden_size=32)
    variables = from_torch_state_dict(make_twin(network, seed=0).state_dict(), network)
    updated, train_results = run_both(
        network, variables, make_twin(network, seed=0), train=True, normalization="running"
    )
    # The first step equals torch's eval(): each env's output depends on its own observation.
    _, eval_results = run_both(network, variables, make_twin(network, seed=0), train=False)
    check_outputs([(train_results[0][0], train_results[0][1], *eval_results[0][2:])])
    # ...while the running statistics moved, once per training call (one step here).
    counts = [v for p, v in jax.tree_util.tree_leaves_with_path(updated) if "count" in str(p)]
    assert counts and all(float(c) == 7 + 1 for c in counts)
    means = [v for p, v in jax.tree_util.tree_leaves_with_path(updated) if "mean" in str(p)]
    before = [v for p, v in jax.tree_util.tree_leaves_with_path(variables) if "mean" in str(p)]
    assert not any(np.allclose(a, b) for a, b in zip(means, before, strict=True))


def test_state_dict_keys_follow_adept_module_names():
    network = ModularNetwork(atari_spec(1))  # adept's defaults: FourConv + LSTM, normalize
    keys = set(to_torch_state_dict(make_variables(network), network))
    assert {
        "trunk_screen.conv1.weight",
        "trunk_screen.bn1.weight",
        "trunk_screen.bn1.running_mean",
        "trunk_screen.bn1.running_var",
        "trunk_screen.bn1.num_batches_tracked",
        "body.lstm.ih.weight",
        "body.lstm.hh.bias",
        "body.lstm.ln_cell.weight",
        "head_action.weight",
        "critic.bias",
    } <= keys
    assert not any("kernel" in key or "scale" in key for key in keys)
    plain = ModularNetwork(atari_spec(1), normalize=False)
    plain_keys = set(to_torch_state_dict(make_variables(plain), plain))
    # torch.nn.LSTMCell keeps its two biases, in torch's [i, f, g, o] gate order.
    assert {"body.lstm.weight_ih", "body.lstm.bias_ih", "body.lstm.weight_hh"} <= plain_keys
    resnet = ModularNetwork(atari_spec(4), vision_network="ResNet50", network_body="Linear")
    resnet_keys = {entry.key for entry in torch_layout(resnet)}
    assert {
        "trunk_screen.resnet.layer1.0.downsample.0.weight",
        "trunk_screen.resnet.layer1.0.downsample.1.running_var",
        "trunk_screen.resnet.layer4.2.conv3.weight",
    } <= resnet_keys


def make_variables(network, seed=0):
    """Random float32 variables with the network's shapes (no flax init, nothing compiled)."""
    carry = network.initial_carry(1)
    obs = {
        k: jax.ShapeDtypeStruct((1, *s.shape), s.dtype)
        for k, s in network.spec.observations.items()
    }
    shapes = jax.eval_shape(
        lambda o: network.init(jax.random.key(0), carry, o, jnp.ones(1, bool), train=False), obs
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (
            np.float32(rng.integers(0, 100))
            if s.ndim == 0
            else rng.normal(size=s.shape).astype(np.float32)
        ),
        shapes,
    )


@pytest.mark.parametrize("vision", FAST_VISION + SLOW_VISION)
def test_round_trip_is_bit_exact_for_every_vision_network(vision):
    network = ModularNetwork(atari_spec(4), vision_network=vision, network_body="Linear")
    variables = make_variables(network)
    state_dict = to_torch_state_dict(variables, network)
    assert all(t.is_contiguous() for t in state_dict.values())
    back = from_torch_state_dict(state_dict, network)
    jax.tree.map(np.testing.assert_array_equal, back, variables)


def test_a_gaussian_heads_log_std_round_trips_as_a_parameter_of_its_own():
    spec = EnvSpec(
        {"obs": ArraySpec((3,), np.dtype(np.float32))},
        {"torque": BoxSpec((2,), (-1.0,) * 2, (1.0,) * 2)},
    )
    network = ModularNetwork(spec, network_body="Linear", hidden_size=8)
    variables = make_variables(network)
    state_dict = to_torch_state_dict(variables, network)
    np.testing.assert_array_equal(
        state_dict["log_std_torque"].numpy(), variables["params"]["log_std_torque"]
    )
    assert tuple(state_dict["head_torque.weight"].shape) == (2, 8)
    back = from_torch_state_dict(state_dict, network)
    jax.tree.map(np.testing.assert_array_equal, back, variables)


def test_layouts_transpose_dense_and_conv_kernels():
    network = ModularNetwork(atari_spec(1), network_body="Linear", hidden_size=8)
    variables = make_variables(network)
    state_dict = to_torch_state_dict(variables, network)
    conv = variables["params"]["trunk_screen"]["conv1"]["kernel"]  # [kh, kw, in, out]
    np.testing.assert_array_equal(
        state_dict["trunk_screen.conv1.weight"].numpy(), np.transpose(conv, (3, 2, 0, 1))
    )
    dense = variables["params"]["body"]["linear"]["kernel"]  # [in, out]
    np.testing.assert_array_equal(state_dict["body.linear.weight"].numpy(), dense.T)
    count = state_dict["trunk_screen.bn1.num_batches_tracked"]
    assert count.dtype == torch.int64
    assert int(count) == int(variables["batch_stats"]["trunk_screen"]["bn1"]["count"])


def test_bad_state_dicts_raise_naming_the_problem():
    network = ModularNetwork(atari_spec(1), network_body="Linear", hidden_size=8)
    state_dict = to_torch_state_dict(make_variables(network), network)
    missing = dict(state_dict)
    del missing["critic.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['critic.weight'\]"):
        from_torch_state_dict(missing, network)
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.weight'\]"):
        from_torch_state_dict({**state_dict, "extra.weight": torch.zeros(1)}, network)
    wrong = {**state_dict, "critic.weight": torch.zeros(2, 8)}
    with pytest.raises(ValueError, match=r"state_dict\['critic.weight'\].*\(8, 2\).*\(8, 1\)"):
        from_torch_state_dict(wrong, network)
    with pytest.raises(ValueError, match="params lack params/critic/bias"):
        variables = make_variables(network)
        del variables["params"]["critic"]["bias"]
        to_torch_state_dict(variables, network)
    with pytest.raises(ValueError, match="pass example inputs"):
        torch_layout(MultiHeadSelfAttention(1, 4, 4))


def test_modules_match_their_torch_twins():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 8)).astype(np.float32)
    for module, twin in [
        (MultiHeadSelfAttention(2, 8, 6), ref.MultiHeadSelfAttention(8, 8, 6, 2)),
        (
            MultiHeadSelfAttention(4, 8, 8, causal=False, scale=True),
            ref.MultiHeadSelfAttention(8, 8, 8, 4, False, True),
        ),
        (RelationalMHDPA(2), ref.RelationalMHDPA(8, 2)),
        (RelationalMHDPA(4, scale=True, causal=False), ref.RelationalMHDPA(8, 4, True, False)),
    ]:
        variables = from_torch_state_dict(twin.state_dict(), module, x)
        with torch.no_grad():
            assert_close(module.apply(variables, x), twin(torch.from_numpy(x)).numpy())
        back = to_torch_state_dict(variables, module, x)
        jax.tree.map(
            np.testing.assert_array_equal, from_torch_state_dict(back, module, x), variables
        )

    memory = rng.normal(size=(2, 3, 8)).astype(np.float32)
    inp = rng.normal(size=(2, 5)).astype(np.float32)
    cell, twin = RMCCell(3, 4, 2, num_blocks=2), ref.RMCCell(5, 3, 4, 2, num_blocks=2)
    variables = from_torch_state_dict(twin.state_dict(), cell, memory, inp)
    with torch.no_grad():
        expected = twin(torch.from_numpy(memory), torch.from_numpy(inp)).numpy()
    assert_close(cell.apply(variables, memory, inp), expected)


def test_fnrl_networks_import_without_torch():
    code = (
        "import sys; import fnrl, fnrl.networks, fnrl.networks.torch_interop; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
