"""Run with 2 CPU devices: one towered update equals one update on the concatenated batch.

For A2C and for PPO (two epochs of whole-shard minibatches), with a categorical and with a
Gaussian policy. The Linear body's network
normalizes its observations (``zscore_norm_env``): the running statistics must pool to those of
the whole batch.

Called by tests/parallel/test_towered.py in a subprocess, because the device count must be
set before JAX starts. Exits non-zero with the largest difference if they differ.
"""

import itertools
import sys
from functools import partial

import jax
import numpy as np

from fnrl.agents import init_train_state, make_actor_critic, make_ppo, make_update
from fnrl.distributions import Gaussian
from fnrl.networks import OBS_STATS, ModularNetwork
from fnrl.optimizers import make_rmsprop
from fnrl.parallel.towered import make_mesh, make_towered_update, to_global, to_local
from fnrl.specs import ArraySpec, BoxSpec, DiscreteSpec, EnvSpec
from fnrl.types import Trajectory

T, B = 6, 8
OBS = {"obs": ArraySpec((4,), np.float32)}
SPECS = {
    "discrete": EnvSpec(OBS, {"action": DiscreteSpec(2)}),
    "continuous": EnvSpec(OBS, {"action": BoxSpec((2,), (-1.0, -1.0), (1.0, 1.0))}),
}


def actions_and_policies(rng, kind):
    """Actions [T, B] and the behaviour policy's logits, or actions [T, B, 2] and a Gaussian
    that took them (some outside the bounds: the stored actions are never clipped)."""
    if kind == "discrete":
        return rng.integers(0, 2, (T, B)).astype(np.int32), np.zeros((T, B, 2), np.float32)
    mean = rng.normal(size=(T, B, 2)).astype(np.float32)
    log_std = np.full((T, B, 2), -0.5, np.float32)
    actions = mean + np.exp(log_std) * rng.normal(size=(T, B, 2)).astype(np.float32)
    return actions, Gaussian(mean, log_std)


def trajectory(rng, carry, kind):
    first = rng.random((T + 1, B)) < 0.3  # uneven numbers of reset steps per device
    first[0] = True
    done = np.concatenate([first[2:], rng.random((1, B)) < 0.3])
    terminated = done & (rng.random((T, B)) < 0.5)
    actions, policies = actions_and_policies(rng, kind)
    return Trajectory(
        obs={"obs": rng.normal(size=(T + 1, B, 4)).astype(np.float32)},
        first=first,
        actions={"action": actions},
        rewards=rng.normal(size=(T, B)).astype(np.float32),
        terminated=terminated,
        truncated=done & ~terminated,
        behaviour_logits={"action": policies},
        initial_carry=carry,
    )


def main() -> int:
    assert jax.device_count() == 2, jax.devices()
    mesh = make_mesh(None)
    worst = 0.0
    # PPO takes two epochs of one minibatch (a mean over the shard, however it is shuffled) and
    # leaves advantages unnormalized, which normalizing per device would change.
    agents = {
        "A2C": make_actor_critic,
        "PPO": partial(make_ppo, epochs=2, minibatches=1, normalize_advantage=False),
    }
    for body, (name, make_agent), kind in itertools.product(
        ("Linear", "LSTM"), agents.items(), SPECS
    ):
        spec = SPECS[kind]
        network = ModularNetwork(
            spec=spec,
            network_body=body,
            normalize=False,
            hidden_size=32,
            zscore_norm_env=body == "Linear",
        )
        agent = make_agent(network, spec)
        optimizer = make_rmsprop(7e-4, max_grad_norm=0.5)
        state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))
        rng = np.random.default_rng(1)
        carry = jax.tree.map(
            lambda x, rng=rng: rng.normal(size=x.shape).astype(np.float32), agent.initial_carry(B)
        )
        traj = trajectory(rng, carry, kind)
        valid = ~traj.first[1:]
        # Uneven sample counts per device: a plain mean of the two gradients would be wrong.
        assert valid[:, : B // 2].sum() != valid[:, B // 2 :].sum()

        single_state, single_metrics = jax.jit(make_update(agent, optimizer))(state, traj)
        update = make_towered_update(agent, optimizer, mesh)
        towered_state, towered_metrics = update(
            to_global(mesh, state, jax.sharding.PartitionSpec()), traj
        )
        towered_state, towered_metrics = to_local((towered_state, towered_metrics))
        if OBS_STATS in single_state.params:
            # Moments of the whole batch; the count is one device's (fnrl.networks.pool_moments).
            single_stats = single_state.params[OBS_STATS]["zscore_obs"]
            towered_stats = towered_state.params[OBS_STATS]["zscore_obs"]
            np.testing.assert_allclose(single_stats.count, T * B + 1e-4, rtol=1e-6)
            np.testing.assert_allclose(towered_stats.count, T * B / 2 + 1e-4, rtol=1e-6)
            towered_state.params[OBS_STATS]["zscore_obs"] = towered_stats._replace(
                count=single_stats.count
            )
        for a, b in zip(
            jax.tree.leaves((single_state.params, single_metrics)),
            jax.tree.leaves((towered_state.params, towered_metrics)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{name} {body} {kind}")
            worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
    print(f"max abs difference {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
