"""Running observation normalization (--zscore-norm-env): the maths, the network, the learner."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compilations import counted_compilations

from fnrl.agents import init_train_state, make_actor_critic, make_update, unroll
from fnrl.networks import (
    OBS_STATS,
    ModularNetwork,
    RunningMoments,
    batch_moments,
    init_moments,
    merge_moments,
    pool_moments,
    update_moments,
    zscore_normalize,
)
from fnrl.optimizers import make_rmsprop
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec
from fnrl.types import Trajectory


def _moments(mean, var, count):
    return RunningMoments(
        jnp.asarray(mean, jnp.float32), jnp.asarray(var, jnp.float32), jnp.float32(count)
    )


def _assert_moments_close(got, mean, var, count, rtol=1e-5):
    np.testing.assert_allclose(got.mean, mean, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(got.var, var, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(got.count, count, rtol=1e-6)


def test_initial_moments_are_stable_baselines3s():
    moments = init_moments((3,))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), moments) == RunningMoments(
        ((3,), jnp.float32), ((3,), jnp.float32), ((), jnp.float32)
    )
    np.testing.assert_array_equal(moments.mean, np.zeros(3))
    np.testing.assert_array_equal(moments.var, np.ones(3))
    assert float(moments.count) == np.float32(1e-4)


VARIANTS = pytest.mark.parametrize("variant", [lambda f: f, jax.jit], ids=["eager", "jit"])


@VARIANTS
def test_zscore_normalize_matches_hand_computed_values(variant):
    moments = _moments([1.0, -2.0], [4.0, 0.25], 10.0)
    x = jnp.asarray([[3.0, -2.0], [1.0, 100.0], [-9.0, -3.0]])
    got = variant(zscore_normalize)(moments, x)
    # (x - mean) / sqrt(var + 1e-8), clipped to [-10, 10]: 102 / 0.5 = 204 and -10 / 2 = -5.
    expected = np.asarray([[1.0, 0.0], [0.0, 10.0], [-5.0, -2.0]])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.shape == (3, 2) and got.dtype == jnp.float32
    # The prior leaves observations as they are, up to the 1e-8 under the square root.
    prior = zscore_normalize(init_moments((2,)), x[:1])
    np.testing.assert_allclose(prior, x[:1] / np.sqrt(1 + 1e-8), rtol=1e-7)


def test_batch_moments_reduce_every_leading_axis():
    x = np.random.default_rng(0).normal(2.0, 3.0, (5, 4, 3)).astype(np.float32)
    flat = x.reshape(20, 3)
    _assert_moments_close(batch_moments(x, 1), flat.mean(0), flat.var(0), 20.0)


@VARIANTS
@pytest.mark.parametrize(("n_a", "n_b"), [(1, 1), (3, 50), (200, 7)])
def test_merge_moments_equals_numpy_moments_of_the_concatenated_samples(variant, n_a, n_b):
    rng = np.random.default_rng(n_a + n_b)
    a = rng.normal(1.0, 2.0, (n_a, 3)).astype(np.float32)
    b = rng.normal(-4.0, 0.5, (n_b, 3)).astype(np.float32)
    merged = variant(merge_moments)(batch_moments(a, 1), batch_moments(b, 1))
    both = np.concatenate([a, b]).astype(np.float64)
    _assert_moments_close(merged, both.mean(0), both.var(0), n_a + n_b)


def test_updates_in_steps_equal_numpy_moments_of_every_sample():
    """From the prior, whose 1e-4 pseudo-count moves the result by about 1e-4 / N."""
    rng = np.random.default_rng(3)
    batches = [rng.normal(0.5, 0.1, (n, 2)).astype(np.float32) for n in (80, 80, 13, 80)]
    moments = init_moments((2,))
    for x in batches:
        moments = jax.jit(update_moments)(moments, x)
    everything = np.concatenate(batches).astype(np.float64)
    _assert_moments_close(moments, everything.mean(0), everything.var(0), 253 + 1e-4)


def test_pooled_device_moments_equal_one_device_that_saw_every_shard():
    """Each device merged its equal shard into the same old moments; pooled, they are the moments
    of the old samples and every shard, the prior's count weighing D times."""
    D, m, n = 4, 30, 50.0
    rng = np.random.default_rng(4)
    old = _moments([0.3, -1.0], [2.0, 0.5], n)
    shards = (
        rng.normal(size=(D, m, 2)).astype(np.float32) * [1.0, 5.0] + np.arange(D)[:, None, None]
    )
    merged = jax.vmap(update_moments, in_axes=(None, 0))(old, shards)
    pooled = jax.vmap(lambda x: pool_moments(x, "d"), axis_name="d")(merged)
    expected = update_moments(old._replace(count=old.count * D), shards.reshape(D * m, 2))
    for device in range(D):
        got = jax.tree.map(lambda x, device=device: x[device], pooled)
        _assert_moments_close(got, expected.mean, expected.var, n + m)
    # A plain mean of the variances would miss the shards' different means.
    assert not np.allclose(merged.var.mean(0), expected.var, rtol=1e-2)


IMAGE_AND_VECTOR = EnvSpec(
    {"screen": ArraySpec((36, 36, 1), np.uint8), "pos": ArraySpec((3,), np.float32)},
    {"action": DiscreteSpec(2)},
)


def _obs(spec, rng, *lead):
    return {
        "screen": rng.integers(0, 256, (*lead, 36, 36, 1)).astype(np.uint8),
        "pos": rng.normal(5.0, 2.0, (*lead, 3)).astype(np.float32),
    }


def _network(spec, zscore_norm_env):
    return ModularNetwork(
        spec=spec,
        network_body="Linear",
        normalize=False,
        hidden_size=8,
        zscore_norm_env=zscore_norm_env,
    )


def test_network_normalizes_vector_observations_with_its_statistics_and_not_images():
    rng = np.random.default_rng(0)
    network, plain = _network(IMAGE_AND_VECTOR, True), _network(IMAGE_AND_VECTOR, False)
    obs, first = _obs(IMAGE_AND_VECTOR, rng, 4), np.ones(4, bool)
    variables = network.init(jax.random.PRNGKey(0), (), obs, first, train=False)
    assert set(variables[OBS_STATS]) == {"zscore_pos"}  # one per vector observation
    stats = _moments([5.0, 4.0, 6.0], [4.0, 1.0, 9.0], 100.0)
    variables = {**variables, OBS_STATS: {"zscore_pos": stats}}
    _, out = network.apply(variables, (), obs, first, train=True)
    # The same params without the flag, on observations normalized by hand.
    normalized = {**obs, "pos": zscore_normalize(stats, obs["pos"])}
    _, expected = plain.apply({"params": variables["params"]}, (), normalized, first, train=True)
    chex.assert_trees_all_close(out, expected, rtol=1e-6, atol=1e-6)
    _, unnormalized = plain.apply({"params": variables["params"]}, (), obs, first, train=True)
    assert not np.allclose(out.value, unnormalized.value)
    assert OBS_STATS not in plain.init(jax.random.PRNGKey(0), (), obs, first, train=False)
    assert hash(network) != hash(plain) and network != plain


def test_update_obs_stats_merges_samples_along_every_leading_axis():
    rng = np.random.default_rng(1)
    network = _network(IMAGE_AND_VECTOR, True)
    obs = _obs(IMAGE_AND_VECTOR, rng, 1)
    variables = network.init(jax.random.PRNGKey(0), (), obs, np.ones(1, bool), train=False)
    new = _obs(IMAGE_AND_VECTOR, rng, 5, 4)
    _, updates = network.apply(
        variables, new, method=ModularNetwork.update_obs_stats, mutable=[OBS_STATS]
    )
    expected = update_moments(init_moments((3,)), new["pos"].reshape(20, 3))
    chex.assert_trees_all_close(updates[OBS_STATS]["zscore_pos"], expected)
    plain = _network(IMAGE_AND_VECTOR, False)
    plain_variables = plain.init(jax.random.PRNGKey(0), (), obs, np.ones(1, bool), train=False)
    _, none = plain.apply(
        plain_variables, new, method=ModularNetwork.update_obs_stats, mutable=[OBS_STATS]
    )
    assert none == {}


VECTOR = EnvSpec({"obs": ArraySpec((4,), np.float32)}, {"action": DiscreteSpec(2)})


def _trajectory(agent, rng, T=6, B=4):
    first = rng.random((T + 1, B)) < 0.2
    first[0] = True
    return Trajectory(
        obs={"obs": rng.normal(3.0, 0.1, (T + 1, B, 4)).astype(np.float32)},
        first=first,
        actions={"action": rng.integers(0, 2, (T, B)).astype(np.int32)},
        rewards=rng.normal(size=(T, B)).astype(np.float32),
        terminated=np.zeros((T, B), bool),
        truncated=np.zeros((T, B), bool),
        behaviour_logits={"action": np.zeros((T, B, 2), np.float32)},
        initial_carry=agent.initial_carry(B),
    )


@pytest.mark.parametrize("body", ["Linear", "LSTM"])
def test_update_merges_the_new_observations_and_learns_with_the_acting_statistics(body):
    network = ModularNetwork(
        spec=VECTOR, network_body=body, normalize=True, hidden_size=16, zscore_norm_env=True
    )
    agent = make_actor_critic(network, VECTOR)
    optimizer = make_rmsprop(7e-4)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    traj = _trajectory(agent, rng)
    # The loss unrolls with the statistics the policy acted with, before this update's merge.
    outputs, _ = unroll(network, state.params, traj.initial_carry, traj.obs, traj.first)
    _, _, acted = agent.act(
        state.params,
        jax.random.PRNGKey(1),
        traj.initial_carry,
        {"obs": traj.obs["obs"][0]},
        traj.first[0],
    )
    np.testing.assert_allclose(outputs.value[0], acted.value, rtol=1e-5, atol=1e-6)

    update = jax.jit(make_update(agent, optimizer))
    new_state, _ = update(state, traj)
    stats = new_state.params[OBS_STATS]["zscore_obs"]
    # obs[0] was the previous segment's last observation: only obs[1:] counts.
    expected = update_moments(init_moments((4,)), traj.obs["obs"][1:].reshape(-1, 4))
    chex.assert_trees_all_close(stats, expected, rtol=1e-6)
    assert float(stats.count) == pytest.approx(6 * 4 + 1e-4)
    with counted_compilations() as compilations:
        newer_state, _ = update(new_state, _trajectory(agent, rng))
    assert compilations == []  # the updated statistics keep their shapes and dtypes
    assert float(newer_state.params[OBS_STATS]["zscore_obs"].count) == pytest.approx(48 + 1e-4)
