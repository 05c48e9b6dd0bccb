"""ModularNetwork: shapes, parameter counts, carry reset, BatchNorm modes, validation, jit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.distributions import Gaussian
from fnrl.networks import LinearBody, LSTMCarry, ModularNetwork, NetworkOutput, count_params
from fnrl.specs import ArraySpec, BoxSpec, DiscreteSpec, EnvSpec


def atari_spec(channels=1, num_actions=6):
    return EnvSpec(
        observations={"screen": ArraySpec((84, 84, channels), np.dtype(np.uint8))},
        actions={"action": DiscreteSpec(num_actions)},
    )


VECTOR_SPEC = EnvSpec(
    observations={"obs": ArraySpec((4,), np.dtype(np.float32))},
    actions={"action": DiscreteSpec(2)},
)


def zeros_obs(spec, batch_size):
    return {key: jnp.zeros((batch_size, *s.shape), s.dtype) for key, s in spec.observations.items()}


def random_obs(spec, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    obs = {}
    for key, s in spec.observations.items():
        if np.dtype(s.dtype) == np.uint8:
            obs[key] = jnp.asarray(rng.integers(0, 256, (batch_size, *s.shape), dtype=np.uint8))
        else:
            obs[key] = jnp.asarray(rng.normal(size=(batch_size, *s.shape)).astype(s.dtype))
    return obs


def abstract_init_and_apply(network, batch_size):
    """Shapes of init and of a train-mode apply, traced without running any convolution."""
    carry = network.initial_carry(batch_size)
    obs = zeros_obs(network.spec, batch_size)
    first = jnp.zeros((batch_size,), bool)

    def run(key):
        variables = network.init(key, carry, obs, first, train=False)
        (new_carry, out), _ = network.apply(
            variables, carry, obs, first, train=True, mutable=["batch_stats"]
        )
        return variables, new_carry, out

    return jax.eval_shape(run, jax.random.key(0))


def jit_init(network, batch_size, seed=0):
    carry = network.initial_carry(batch_size)
    obs = zeros_obs(network.spec, batch_size)
    first = jnp.zeros((batch_size,), bool)
    init = jax.jit(lambda key: network.init(key, carry, obs, first, train=False))
    return init(jax.random.key(seed))


@pytest.mark.parametrize("vision", ["FourConv", "Nature"])
@pytest.mark.parametrize("body", ["Identity", "Linear", "LSTM"])
@pytest.mark.parametrize("normalize", [True, False])
def test_atari_output_shapes_and_dtypes(vision, body, normalize):
    channels = 1 if body == "LSTM" else 4  # adept: frame stack 1 for recurrent bodies, else 4
    network = ModularNetwork(
        atari_spec(channels), vision_network=vision, network_body=body, normalize=normalize
    )
    variables, carry, out = abstract_init_and_apply(network, batch_size=3)
    assert isinstance(out, NetworkOutput)
    assert set(out.logits) == {"action"}
    assert out.logits["action"].shape == (3, 6) and out.logits["action"].dtype == jnp.float32
    assert out.value.shape == (3,) and out.value.dtype == jnp.float32
    if body == "LSTM":
        assert carry.c.shape == carry.h.shape == (3, 512)
        assert carry.c.dtype == carry.h.dtype == jnp.float32
    else:
        assert carry == ()
    assert ("batch_stats" in variables) is normalize


@pytest.mark.parametrize("discrete", ["Identity", "Linear"])
@pytest.mark.parametrize("body", ["Identity", "Linear", "LSTM"])
@pytest.mark.parametrize("normalize", [True, False])
def test_vector_spec_runs_under_jit_with_finite_outputs(discrete, body, normalize):
    network = ModularNetwork(
        VECTOR_SPEC,
        discrete_network=discrete,
        network_body=body,
        normalize=normalize,
        hidden_size=16,
    )
    variables = jit_init(network, batch_size=4)
    apply = jax.jit(network.apply, static_argnames=("train", "mutable"))
    carry = network.initial_carry(4)
    obs = random_obs(VECTOR_SPEC, 4)
    first = jnp.array([True, False, False, True])
    (new_carry, out), _ = apply(variables, carry, obs, first, train=True, mutable=("batch_stats",))
    assert out.logits["action"].shape == (4, 2) and out.logits["action"].dtype == jnp.float32
    assert out.value.shape == (4,) and out.value.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out.value)))
    assert jax.tree.structure(new_carry) == jax.tree.structure(carry)


def test_pong_four_conv_lstm_parameter_count_matches_adept():
    network = ModularNetwork(atari_spec(channels=1, num_actions=6))  # adept defaults, normalize
    variables, _, _ = abstract_init_and_apply(network, batch_size=1)
    conv = 7 * 7 * 1 * 32 + 3 * (3 * 3 * 32 * 32)  # four bias-free convs
    bn = 4 * (32 + 32)  # BatchNorm weight and bias; running stats are buffers, not params
    lstm_ih = 800 * 4 * 512 + 4 * 512  # LSTMCellLayerNorm.ih: Linear(800, 2048)
    lstm_hh = 512 * 4 * 512 + 4 * 512  # LSTMCellLayerNorm.hh: Linear(512, 2048)
    ln_cell = 2 * 512
    heads = (512 * 6 + 6) + (512 * 1 + 1)  # action logits + critic
    expected = conv + bn + lstm_ih + lstm_hh + ln_cell + heads
    assert expected == 2_725_159  # adept's printed count for Pong, FourConv + LSTM
    assert count_params(variables["params"]) == expected


def test_four_conv_lstm_without_normalize_parameter_count():
    network = ModularNetwork(atari_spec(channels=4), normalize=False)
    variables, _, _ = abstract_init_and_apply(network, batch_size=1)
    conv = (7 * 7 * 4 * 32 + 32) + 3 * (3 * 3 * 32 * 32 + 32)  # convs with biases, no BN
    lstm = (800 * 2048 + 2048) + (512 * 2048 + 2048)  # torch LSTMCell: W_ih, b_ih, W_hh, b_hh
    heads = (512 * 6 + 6) + (512 + 1)
    assert count_params(variables["params"]) == conv + lstm + heads == 2_728_711


@pytest.mark.parametrize("normalize", [True, False])
def test_nature_linear_parameter_count(normalize):
    network = ModularNetwork(
        atari_spec(channels=4), vision_network="Nature", network_body="Linear", normalize=normalize
    )
    variables, _, _ = abstract_init_and_apply(network, batch_size=1)
    conv = 8 * 8 * 4 * 32 + 4 * 4 * 32 * 64 + 3 * 3 * 64 * 64
    linear = 3136 * 512
    bn = 2 * (32 + 64 + 64) + 2 * 512  # BatchNorm weight and bias after bias-free layers
    biases = (32 + 64 + 64) + 512
    extra = bn if normalize else biases
    heads = (512 * 6 + 6) + (512 + 1)
    expected = conv + linear + extra + heads
    assert expected == (1_688_391 if normalize else 1_687_719)
    assert count_params(variables["params"]) == expected


def test_vector_parameter_counts():
    def count(**kwargs):
        network = ModularNetwork(VECTOR_SPEC, **kwargs)
        return count_params(abstract_init_and_apply(network, 1)[0]["params"])

    heads_512 = (512 * 2 + 2) + (512 + 1)
    assert count() == (4 * 2048 + 2048) + (512 * 2048 + 2048) + 2 * 512 + heads_512
    assert count(network_body="Identity") == (4 * 2 + 2) + (4 + 1)
    mlp = (4 * 64 + 2 * 64) + (64 * 64 + 2 * 64)  # bias-free Dense + BatchNorm, twice
    body = 64 * 512 + 2 * 512
    assert count(discrete_network="Linear", network_body="Linear") == mlp + body + heads_512


def test_body_input_concatenates_trunk_features_in_sorted_key_order():
    spec = EnvSpec(
        observations={
            "screen": ArraySpec((84, 84, 2), np.dtype(np.uint8)),
            "player": ArraySpec((11,), np.dtype(np.float32)),
        },
        actions={"b_second": DiscreteSpec(3), "a_first": DiscreteSpec(5)},
    )
    network = ModularNetwork(spec, hidden_size=32)
    variables, _, out = abstract_init_and_apply(network, batch_size=2)
    params = variables["params"]
    assert params["body"]["lstm"]["ih"]["kernel"].shape == (11 + 800, 4 * 32)
    assert list(out.logits) == ["a_first", "b_second"]
    assert out.logits["a_first"].shape == (2, 5) and out.logits["b_second"].shape == (2, 3)
    assert params["head_a_first"]["kernel"].shape == (32, 5)
    assert params["critic"]["kernel"].shape == (32, 1)
    assert set(params) == {"trunk_screen", "body", "head_a_first", "head_b_second", "critic"}


@pytest.mark.parametrize("normalize", [True, False])
def test_lstm_carry_is_zeroed_exactly_where_first(normalize):
    network = ModularNetwork(VECTOR_SPEC, normalize=normalize, hidden_size=8)
    variables = jit_init(network, batch_size=4)
    apply = jax.jit(
        lambda carry, obs, first: network.apply(variables, carry, obs, first, train=False)
    )
    keys = jax.random.split(jax.random.key(3), 2)
    carry = LSTMCarry(c=jax.random.normal(keys[0], (4, 8)), h=jax.random.normal(keys[1], (4, 8)))
    obs = random_obs(VECTOR_SPEC, 4)
    first = jnp.array([True, False, True, False])

    carry_out, out = apply(carry, obs, first)
    zero_carry_out, zero_out = apply(network.initial_carry(4), obs, jnp.zeros(4, bool))
    kept_carry_out, kept_out = apply(carry, obs, jnp.zeros(4, bool))

    reset_rows, kept_rows = np.array([0, 2]), np.array([1, 3])
    for rows, ref_carry, ref_out in [
        (reset_rows, zero_carry_out, zero_out),
        (kept_rows, kept_carry_out, kept_out),
    ]:
        np.testing.assert_allclose(carry_out.c[rows], ref_carry.c[rows], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(carry_out.h[rows], ref_carry.h[rows], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out.value[rows], ref_out.value[rows], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            out.logits["action"][rows], ref_out.logits["action"][rows], rtol=1e-6, atol=1e-6
        )
    # The kept rows really depend on the carry (the test would be vacuous otherwise).
    assert not np.allclose(kept_out.value[kept_rows], zero_out.value[kept_rows])


@pytest.mark.parametrize(("vision", "body"), [("FourConv", "LSTM"), ("Nature", "Linear")])
def test_batch_norm_train_updates_running_stats_and_eval_does_not(vision, body):
    network = ModularNetwork(
        atari_spec(channels=1), vision_network=vision, network_body=body, hidden_size=16
    )
    assert network.normalization == "batch"  # adept's default
    variables = jit_init(network, batch_size=2)
    np.testing.assert_array_equal(variables["batch_stats"]["trunk_screen"]["bn1"]["mean"], 0.0)
    np.testing.assert_array_equal(variables["batch_stats"]["trunk_screen"]["bn1"]["var"], 1.0)

    apply = jax.jit(network.apply, static_argnames=("train", "mutable"))
    carry = network.initial_carry(2)
    obs = random_obs(network.spec, 2)
    first = jnp.ones(2, bool)

    (_, train_out), updates = apply(
        variables, carry, obs, first, train=True, mutable=("batch_stats",)
    )
    for old, new in zip(
        jax.tree.leaves(variables["batch_stats"]),
        jax.tree.leaves(updates["batch_stats"]),
        strict=True,
    ):
        assert not np.allclose(old, new)

    (_, eval_out), eval_updates = apply(
        variables, carry, obs, first, train=False, mutable=("batch_stats",)
    )
    jax.tree.map(
        np.testing.assert_array_equal, eval_updates["batch_stats"], variables["batch_stats"]
    )
    _, plain_eval_out = apply(variables, carry, obs, first, train=False)
    np.testing.assert_array_equal(plain_eval_out.value, eval_out.value)
    assert not np.allclose(train_out.value, eval_out.value)  # batch vs running statistics


def test_uint8_images_are_divided_by_255():
    network = ModularNetwork(atari_spec(channels=1), network_body="Identity", normalize=False)
    float_spec = EnvSpec(
        observations={"screen": ArraySpec((84, 84, 1), np.dtype(np.float32))},
        actions={"action": DiscreteSpec(6)},
    )
    float_network = ModularNetwork(float_spec, network_body="Identity", normalize=False)
    variables = jit_init(network, batch_size=2)
    obs = random_obs(network.spec, 2)
    first = jnp.zeros(2, bool)
    _, out = jax.jit(lambda o: network.apply(variables, (), o, first, train=False))(obs)
    float_obs = {"screen": obs["screen"].astype(jnp.float32) / 255.0}
    _, float_out = jax.jit(lambda o: float_network.apply(variables, (), o, first, train=False))(
        float_obs
    )
    np.testing.assert_allclose(out.value, float_out.value, rtol=1e-5, atol=1e-6)


def test_head_and_conv_inits_follow_torch_defaults():
    network = ModularNetwork(atari_spec(channels=1), network_body="Linear", hidden_size=64)
    params = jit_init(network, batch_size=1)["params"]
    for name in ("head_action", "critic"):
        for leaf in params[name].values():
            assert np.abs(leaf).max() <= 1 / math.sqrt(64)
    body_kernel = params["body"]["linear"]["kernel"]
    assert np.abs(body_kernel).max() <= 1 / math.sqrt(800)
    conv1 = params["trunk_screen"]["conv1"]["kernel"]
    assert np.abs(conv1).max() <= math.sqrt(2) / math.sqrt(7 * 7 * 1)
    assert np.abs(conv1).max() > 0.9 * math.sqrt(2) / math.sqrt(7 * 7 * 1)


def test_initial_carry_works_on_an_unbound_module():
    carry = ModularNetwork(VECTOR_SPEC, hidden_size=8).initial_carry(3)
    assert isinstance(carry, LSTMCarry)
    assert carry.c.shape == carry.h.shape == (3, 8)
    np.testing.assert_array_equal(carry.c, 0.0)
    assert ModularNetwork(VECTOR_SPEC, network_body="Linear").initial_carry(3) == ()
    assert ModularNetwork(VECTOR_SPEC).recurrent
    assert not ModularNetwork(VECTOR_SPEC, network_body="Identity").recurrent


@pytest.mark.parametrize("shape", [(84, 84), (), (2, 3, 4, 5)])
def test_observation_of_unsupported_rank_raises_naming_key_and_shape(shape):
    spec = EnvSpec(
        observations={"weird": ArraySpec(shape, np.dtype(np.float32))},
        actions={"action": DiscreteSpec(2)},
    )
    with pytest.raises(ValueError, match=rf"'weird' has shape {re_escape(shape)}"):
        ModularNetwork(spec)


def re_escape(shape):
    import re

    return re.escape(str(tuple(shape)))


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("vision_network", "unknown vision network 'Bogus'; choose one of: FourConv, "),
        ("discrete_network", "unknown discrete network 'Bogus'; choose one of: Identity, Linear"),
        ("network_body", "unknown network body 'Bogus'; choose one of: Identity, LSTM, Linear"),
    ],
)
def test_unknown_names_raise_at_construction(field, message):
    with pytest.raises(ValueError, match=message):
        ModularNetwork(VECTOR_SPEC, **{field: "Bogus"})


def test_too_small_image_and_missing_observation_raise():
    small = EnvSpec({"screen": ArraySpec((8, 8, 1), np.dtype(np.uint8))}, {"a": DiscreteSpec(2)})
    with pytest.raises(ValueError, match="too small"):
        ModularNetwork(small, vision_network="Nature")
    network = ModularNetwork(VECTOR_SPEC, network_body="Identity")
    with pytest.raises(ValueError, match="'obs'"):
        network.init(jax.random.key(0), (), {}, jnp.zeros(2, bool), train=False)


def test_network_is_hashable_for_static_arguments():
    a = ModularNetwork(VECTOR_SPEC, hidden_size=8)
    b = ModularNetwork(
        EnvSpec(dict(VECTOR_SPEC.observations), dict(VECTOR_SPEC.actions)), hidden_size=8
    )
    assert a == b and hash(a) == hash(b)
    two_actions = {"x": DiscreteSpec(2), "y": DiscreteSpec(3)}
    c = ModularNetwork(EnvSpec(VECTOR_SPEC.observations, two_actions))
    d = ModularNetwork(EnvSpec(VECTOR_SPEC.observations, dict(reversed(two_actions.items()))))
    assert c == d and hash(c) == hash(d)


def test_running_batch_norm_makes_each_env_independent_of_the_others():
    network = ModularNetwork(
        VECTOR_SPEC, discrete_network="Linear", network_body="Linear", hidden_size=8
    )
    running = network.clone(normalization="running")
    variables = jit_init(network, batch_size=4)
    obs = random_obs(VECTOR_SPEC, 4)
    first = jnp.ones(4, bool)

    def apply(net, variables, obs):
        (_, out), updates = net.apply(
            variables, (), obs, first[: obs["obs"].shape[0]], train=True, mutable=["batch_stats"]
        )
        return out, updates

    # Before any update the batch statistics normalize, and the first update sets the running
    # statistics to them (rather than moving 10% of the way from mean 0 / variance 1).
    out, updates = apply(running, variables, obs)
    batch_out, _ = apply(network, variables, obs)
    np.testing.assert_allclose(out.value, batch_out.value, rtol=1e-5, atol=1e-6)
    trunk_stats = updates["batch_stats"]["trunk_obs"]["bn1"]
    assert float(trunk_stats["count"]) == 1.0
    pre = np.asarray(obs["obs"]) @ np.asarray(variables["params"]["trunk_obs"]["linear1"]["kernel"])
    np.testing.assert_allclose(trunk_stats["mean"], pre.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trunk_stats["var"], pre.var(0, ddof=1), rtol=1e-4, atol=1e-5)

    # Afterwards an env's output does not depend on the other envs in the batch.
    variables = {**variables, **updates}
    full, _ = apply(running, variables, obs)
    alone, _ = apply(running, variables, {"obs": obs["obs"][:1]})
    np.testing.assert_allclose(alone.value, full.value[:1], rtol=1e-5, atol=1e-6)
    (_, evaluation) = running.apply(variables, (), obs, first, train=False)
    np.testing.assert_allclose(evaluation.value, full.value, rtol=1e-5, atol=1e-6)
    batch_full, _ = apply(network, variables, obs)
    batch_alone, _ = apply(network, variables, {"obs": obs["obs"][:2]})
    assert not np.allclose(batch_alone.value, batch_full.value[:2])  # adept's mode couples them


def test_layer_normalization_is_per_sample_stateless_and_keeps_biases():
    network = ModularNetwork(
        VECTOR_SPEC,
        discrete_network="Linear",
        network_body="Linear",
        hidden_size=8,
        normalization="layer",
    )
    variables = jit_init(network, batch_size=4)
    assert set(variables) == {"params"}  # no running statistics
    assert "bias" in variables["params"]["trunk_obs"]["linear1"]
    assert "bias" in variables["params"]["body"]["linear"]
    obs = random_obs(VECTOR_SPEC, 4)
    first = jnp.ones(4, bool)
    (_, full), updates = network.apply(
        variables, (), obs, first, train=True, mutable=["batch_stats"]
    )
    assert updates == {}
    _, alone = network.apply(variables, (), {"obs": obs["obs"][:1]}, first[:1], train=True)
    _, evaluation = network.apply(variables, (), obs, first, train=False)
    np.testing.assert_allclose(alone.value, full.value[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(evaluation.value, full.value, rtol=1e-6, atol=1e-6)
    # The body's features are layer-normalized pre-activations: hand-computed for env 0.
    trunk = variables["params"]["trunk_obs"]
    x = np.asarray(obs["obs"][0], np.float64)
    for i in (1, 2):
        x = x @ np.asarray(trunk[f"linear{i}"]["kernel"]) + np.asarray(trunk[f"linear{i}"]["bias"])
        x = np.maximum((x - x.mean()) / np.sqrt(x.var() + 1e-5), 0.0)  # scale 1, bias 0 at init
    body_module = LinearBody(hidden_size=8, normalization="layer")
    _, features = body_module.apply(
        {"params": variables["params"]["body"]}, (), jnp.asarray(x[None], jnp.float32), train=False
    )
    body = variables["params"]["body"]["linear"]
    pre = x @ np.asarray(body["kernel"]) + np.asarray(body["bias"])
    expected = np.maximum((pre - pre.mean()) / np.sqrt(pre.var() + 1e-5), 0.0)
    np.testing.assert_allclose(features[0], expected, rtol=1e-4, atol=1e-5)


def test_rmc_memory_restarts_from_identity_rows_where_first():
    network = ModularNetwork(VECTOR_SPEC, network_body="RMC", hidden_size=16, nb_head=2)
    variables = jit_init(network, batch_size=3)
    carry = network.initial_carry(3)
    np.testing.assert_array_equal(carry.memory[1], np.eye(4, 4))
    obs = random_obs(VECTOR_SPEC, 3)
    apply = jax.jit(lambda c, f: network.apply(variables, c, obs, f, train=False))
    carry, _ = apply(carry, jnp.ones(3, bool))
    carry, _ = apply(carry, jnp.zeros(3, bool))  # memory now far from its start
    reset, out = apply(carry, jnp.array([False, True, False]))
    fresh, fresh_out = apply(network.initial_carry(3), jnp.ones(3, bool))
    np.testing.assert_allclose(reset.memory[1], fresh.memory[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.value[1], fresh_out.value[1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(reset.memory[0], fresh.memory[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vision_network": "FourConvSpatialAttention", "nb_head": 3}, "must divide 34"),
        ({"network_body": "RMC", "nb_head": 3}, "divisible by 4 \\* nb_head = 12"),
        ({"nb_head": 0}, "nb_head"),
        ({"normalization": "mean"}, "normalization must be 'batch'"),
    ],
)
def test_bad_options_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModularNetwork(atari_spec(channels=1), **kwargs)


def test_observation_and_carry_shape_mismatches_name_the_problem():
    network = ModularNetwork(VECTOR_SPEC, network_body="LSTM", hidden_size=8)
    variables = jit_init(network, batch_size=2)
    obs = zeros_obs(network.spec, 2)
    first = jnp.ones(2, bool)
    bad_obs = {"obs": jnp.zeros((2, 5), jnp.float32)}
    with pytest.raises(ValueError, match=r"'obs' has shape \(2, 5\), expected \(2, 4\)"):
        network.apply(variables, network.initial_carry(2), bad_obs, first, train=False)
    with pytest.raises(ValueError, match=r"carry array 0 has shape \(2, 16\).*\(2, 8\)"):
        wide = ModularNetwork(VECTOR_SPEC, network_body="LSTM", hidden_size=16)
        network.apply(variables, wide.initial_carry(2), obs, first, train=False)
    with pytest.raises(ValueError, match="the carry has 0 arrays but the 'LSTM' body keeps 2"):
        network.apply(variables, (), obs, first, train=False)


@pytest.mark.parametrize(
    ("vision", "features"),
    [("FourConvSpatialAttention", 1152), ("IMPALA", 256), ("ResNet18", 512), ("ResNet50", 2048)],
)
def test_new_vision_networks_work_on_84x84_atari_frames(vision, features):
    network = ModularNetwork(atari_spec(channels=4), vision_network=vision, network_body="Linear")
    variables, _, out = abstract_init_and_apply(network, batch_size=2)
    assert variables["params"]["body"]["linear"]["kernel"].shape == (features, 512)
    assert out.logits["action"].shape == (2, 6) and out.value.shape == (2,)


def test_batch_statistics_hide_what_all_envs_share_and_running_ones_do_not():
    """Why ``normalization="batch"`` cannot balance CartPole: a shift common to every env's
    observation (the batch mean moving) leaves every output unchanged."""
    network = ModularNetwork(VECTOR_SPEC, network_body="Linear", hidden_size=8)
    variables = jit_init(network, batch_size=5)
    obs = random_obs(VECTOR_SPEC, 5)
    shifted = {"obs": obs["obs"] + jnp.array([[0.5, -1.0, 0.2, 2.0]])}
    first = jnp.zeros(5, bool)
    for mode, invisible in (("batch", True), ("running", False)):
        net = network.clone(normalization=mode)
        variables_mode = {
            **variables,
            "batch_stats": jax.tree.map(
                lambda v: v + 1.0 if v.ndim == 0 else v, variables["batch_stats"]
            ),
        }  # one update already made: count 1
        (_, out), _ = net.apply(variables_mode, (), obs, first, train=True, mutable=["batch_stats"])
        (_, moved), _ = net.apply(
            variables_mode, (), shifted, first, train=True, mutable=["batch_stats"]
        )
        assert np.allclose(out.value, moved.value, atol=1e-5) is invisible, mode


def test_continuous_actions_get_a_gaussian_head_with_a_state_independent_log_std():
    spec = EnvSpec(
        observations={"obs": ArraySpec((4,), np.dtype(np.float32))},
        actions={"move": DiscreteSpec(3), "torque": BoxSpec((2,), (-1.0, -1.0), (1.0, 1.0))},
    )
    network = ModularNetwork(spec, network_body="Linear", hidden_size=16, normalize=False)
    variables = network.init(
        jax.random.key(0), (), zeros_obs(spec, 1), jnp.ones((1,), bool), train=False
    )
    np.testing.assert_array_equal(variables["params"]["log_std_torque"], [0.0, 0.0])
    (_, out), _ = network.apply(
        variables, (), random_obs(spec, 5), jnp.zeros((5,), bool), train=True, mutable=[]
    )
    assert out.logits["move"].shape == (5, 3)
    torque = out.logits["torque"]
    assert isinstance(torque, Gaussian)
    assert torque.mean.shape == torque.log_std.shape == (5, 2)
    assert not np.allclose(torque.mean[0], torque.mean[1])  # the mean depends on the state
    np.testing.assert_array_equal(torque.log_std, np.zeros((5, 2)))  # the log-std does not
    assert count_params(variables["params"]["head_torque"]) == 16 * 2 + 2  # Dense(16 -> 2) mean


def test_a_continuous_action_must_be_a_vector():
    spec = VECTOR_SPEC._replace(actions={"torque": BoxSpec((2, 2), (0.0,) * 4, (1.0,) * 4)})
    with pytest.raises(ValueError, match=r"continuous action 'torque' has shape \(2, 2\)"):
        ModularNetwork(spec)
