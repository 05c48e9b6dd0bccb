"""Hand-checkable networks and random trajectories for the agent tests."""

import flax.linen as nn
import jax
import numpy as np

from fnrl.agents import make_update
from fnrl.agents.base import init_train_state
from fnrl.networks import NetworkOutput
from fnrl.optimizers import make_rmsprop
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec
from fnrl.types import Trajectory

NUM_STATES, NUM_ACTIONS = 5, 3
TABLE_SPEC = EnvSpec({"state": ArraySpec((), np.int32)}, {"action": DiscreteSpec(NUM_ACTIONS)})


class TableNetwork(nn.Module):
    """Tabular logits and values indexed by an integer state: easy to check by hand."""

    @nn.compact
    def __call__(self, carry, obs, first, *, train):
        del first, train
        logits = self.param("logits", nn.initializers.normal(1.0), (NUM_STATES, NUM_ACTIONS))
        values = self.param("values", nn.initializers.normal(1.0), (NUM_STATES,))
        return carry, NetworkOutput({"action": logits[obs["state"]]}, values[obs["state"]])

    def initial_carry(self, batch_size):
        del batch_size
        return ()


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def episode_flags(rng, T, B):
    """Random episode boundaries with next-step autoreset: an episode ends at step t (terminated
    or truncated) exactly when step t + 1 is the automatic reset, i.e. ``first[t + 2]``."""
    first = rng.random((T + 1, B)) < 0.2
    first[0] = True
    done = np.concatenate([first[2:], rng.random((1, B)) < 0.2])
    terminated = done & (rng.random((T, B)) < 0.5)
    return first, terminated, done & ~terminated


def table_trajectory(rng, T, B, *, random_behaviour):
    """A trajectory of ``TableNetwork`` states; behaviour logits random or all zero."""
    first, terminated, truncated = episode_flags(rng, T, B)
    obs = {"state": rng.integers(0, NUM_STATES, (T + 1, B)).astype(np.int32)}
    actions = {"action": rng.integers(0, NUM_ACTIONS, (T, B)).astype(np.int32)}
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    if random_behaviour:
        behaviour = rng.normal(size=(T, B, NUM_ACTIONS)).astype(np.float32)
    else:
        behaviour = np.zeros((T, B, NUM_ACTIONS), np.float32)
    return Trajectory(
        obs=obs,
        first=first,
        actions=actions,
        rewards=rewards,
        terminated=terminated,
        truncated=truncated,
        behaviour_logits={"action": behaviour},
        initial_carry=(),
    )


def assert_update_logs_explained_variance(agent, params, traj, fit):
    """The update's ``explained_variance`` is SB3's ``1 - Var[target - value] / Var[target]`` of
    the ``[N, 2]`` (target, value) pairs ``fit`` that the loss fitted."""
    optimizer = make_rmsprop(7e-4)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))._replace(params=params)
    _, metrics = jax.jit(make_update(agent, optimizer))(state, traj)
    targets, values = np.asarray(fit).T
    want = 1 - np.var(targets - values) / np.var(targets)
    np.testing.assert_allclose(metrics["explained_variance"], want, rtol=1e-5)
