"""The PPO agent: its loss against a Python loop, its minibatches and its learner schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from agent_helpers import TABLE_SPEC, TableNetwork, log_softmax, table_trajectory

from fnrl.agents import init_train_state, make_ppo, make_update
from fnrl.agents.base import learner_key
from fnrl.agents.ppo import PPOBatch, sequence_minibatches, step_minibatches
from fnrl.evaluate import evaluate_checkpoints
from fnrl.optimizers import make_rmsprop
from fnrl.parallel.local import train_local
from fnrl.train import parse_args

DISCOUNT, LAMBDA, CLIP = 0.9, 0.8, 0.2


def _reference_ppo_loss(old, new, traj, *, value_coef, entropy_coef):
    """PPO's loss on the whole rollout written as plain loops (Schulman et al. 2017)."""
    states = np.asarray(traj.obs["state"])
    actions = np.asarray(traj.actions["action"])
    T, B = traj.rewards.shape
    v_old = old["values"][states]
    advantages = np.zeros((T, B))
    for b in range(B):
        adv = 0.0
        for t in reversed(range(T)):
            d = 0.0 if traj.terminated[t, b] else DISCOUNT
            cut = 0.0 if traj.truncated[t, b] else 1.0
            delta = traj.rewards[t, b] + d * v_old[t + 1, b] - v_old[t, b]
            advantages[t, b] = adv = delta + d * LAMBDA * cut * adv
    valid = ~np.asarray(traj.first[1:])
    targets = advantages + v_old[:-1]
    a = advantages[valid]
    normalized = (advantages - a.mean()) / (a.std(ddof=1) + 1e-5)
    policy = value = entropy = 0.0
    ratios = []
    for t, b in zip(*np.nonzero(valid), strict=True):
        s, action = states[t, b], actions[t, b]
        logp = log_softmax(new["logits"][s])
        behaviour = log_softmax(np.asarray(traj.behaviour_logits["action"][t, b]))
        ratio = np.exp(logp[action] - behaviour[action])
        ratios.append(ratio)
        adv = normalized[t, b]
        policy -= min(ratio * adv, np.clip(ratio, 1 - CLIP, 1 + CLIP) * adv)
        v = new["values"][s]
        clipped_v = v_old[t, b] + np.clip(v - v_old[t, b], -CLIP, CLIP)
        value += 0.5 * max((v - targets[t, b]) ** 2, (clipped_v - targets[t, b]) ** 2)
        entropy += np.sum(np.exp(logp) * logp)
    n = valid.sum()
    return (policy + value_coef * value + entropy_coef * entropy) / n, np.array(ratios)


def _agent(**kwargs):
    settings = dict(discount=DISCOUNT, gae_lambda=LAMBDA, clip=CLIP) | kwargs
    return make_ppo(TableNetwork(), TABLE_SPEC, **settings)


def test_ppo_loss_equals_python_loop_with_clipped_and_unclipped_ratios():
    rng = np.random.default_rng(0)
    traj = table_trajectory(rng, 8, 4, random_behaviour=True)
    agent = _agent(value_coef=0.7, entropy_coef=0.05)
    old = agent.init(jax.random.PRNGKey(0))
    new = jax.tree.map(lambda x: x + 0.3 * rng.normal(size=x.shape).astype(np.float32), old)
    batch, written = jax.jit(agent.prepare)(old, traj)
    assert written == {}  # a table has no statistics
    loss, aux = jax.jit(agent.loss)(new, batch)
    expected, ratios = _reference_ppo_loss(
        jax.tree.map(np.asarray, old["params"]),
        jax.tree.map(np.asarray, new["params"]),
        traj,
        value_coef=0.7,
        entropy_coef=0.05,
    )
    clipped = np.abs(ratios - 1) > CLIP
    assert clipped.any() and not clipped.all()  # both branches of the surrogate
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(aux.metrics["clip_fraction"], clipped.mean(), rtol=1e-6)
    assert aux.count == (~traj.first[1:]).sum()


def _ids_batch(T, B, carry_width=2):
    ids = np.arange(T * B).reshape(T, B)
    fields = {name: ids for name in ("first", "valid", "log_prob", "value", "advantage", "target")}
    return PPOBatch(
        obs={"id": ids},
        actions={"action": ids},
        initial_carry=np.arange(B * carry_width).reshape(B, carry_width),
        **fields,
    )


def test_step_minibatches_partition_every_step_of_the_rollout_once():
    T, B = 6, 4
    minibatches = step_minibatches(jax.random.PRNGKey(0), _ids_batch(T, B), 3)
    assert minibatches.obs["id"].shape == (3, 1, 8)
    assert minibatches.initial_carry == ()
    ids = np.asarray(minibatches.obs["id"]).ravel()
    assert sorted(ids) == list(range(T * B)) and list(ids) != list(range(T * B))  # shuffled
    np.testing.assert_array_equal(minibatches.advantage, minibatches.obs["id"])


def test_sequence_minibatches_keep_each_env_sequence_whole_with_its_carry():
    T, B = 5, 6
    batch = _ids_batch(T, B)
    minibatches = sequence_minibatches(jax.random.PRNGKey(1), batch, 3)
    assert minibatches.obs["id"].shape == (3, T, 2)
    envs = np.asarray(minibatches.obs["id"])[:, 0, :] % B  # each column's env
    assert sorted(envs.ravel()) == list(range(B))
    for m in range(3):
        for column, env in enumerate(envs[m]):
            np.testing.assert_array_equal(
                minibatches.obs["id"][m, :, column], batch.obs["id"][:, env]
            )
            np.testing.assert_array_equal(
                minibatches.initial_carry[m, column], batch.initial_carry[env]
            )


@pytest.mark.parametrize("split", [step_minibatches, sequence_minibatches])
def test_minibatch_count_must_divide_the_rollout(split):
    with pytest.raises(ValueError, match="--minibatches 4 does not divide"):
        split(jax.random.PRNGKey(0), _ids_batch(3, 3), 4)


def test_update_takes_shuffled_minibatch_steps_epoch_by_epoch_as_a_python_loop():
    rng = np.random.default_rng(2)
    traj = table_trajectory(rng, 6, 4, random_behaviour=True)
    agent = _agent(epochs=2, minibatches=3)
    optimizer = make_rmsprop(1e-2, max_grad_norm=0.5)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(3))
    got, metrics = jax.jit(make_update(agent, optimizer))(state, traj)

    params = state.params
    batch, _ = agent.prepare(params, traj)
    trainable, opt_state, losses, orders = params["params"], state.opt_state, [], []
    for key in jax.random.split(learner_key(state), 2):
        minibatches = agent.minibatches(key, batch)
        orders.append(np.asarray(minibatches.obs["state"]))
        for i in range(3):
            minibatch = jax.tree.map(lambda x, i=i: x[i], minibatches)
            (loss, _), grads = jax.value_and_grad(
                lambda p, mb=minibatch: agent.loss({**params, "params": p}, mb), has_aux=True
            )(trainable)
            updates, opt_state = optimizer.update(grads, opt_state, trainable)
            trainable = optax.apply_updates(trainable, updates)
            losses.append(loss)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch
    for a, b in zip(jax.tree.leaves(got.params["params"]), jax.tree.leaves(trainable), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["total_loss"], np.mean(losses), rtol=1e-5)
    assert int(got.step) == 1 and jnp.array_equal(got.key, state.key)
    # CleanRL's explained variance: the rollout's returns by its acting values, over the whole
    # rollout at once however it was minibatched.
    valid = np.asarray(batch.valid)
    targets, values = np.asarray(batch.target)[valid], np.asarray(batch.value)[valid]
    want = 1 - np.var(targets - values) / np.var(targets)
    explained = metrics["explained_variance"]
    assert explained.dtype == jnp.float32 and explained.shape == ()
    np.testing.assert_allclose(explained, want, rtol=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="clip range must be positive"):
        _agent(clip=0.0)
    with pytest.raises(ValueError, match="epochs and minibatches must be at least 1"):
        _agent(minibatches=0)


@pytest.mark.slow
def test_ppo_solves_cartpole_from_the_command_line(tmp_path):
    """Gymnasium's CartPole-v1 ``reward_threshold`` is 475 (CleanRL's ppo.py: 492 ± 13 at 500k).

    ``--agent PPO`` and a budget only: PPO's classic-control preset (4 envs x 128 steps, Adam
    2.5e-4). Measured (seeds 0, 1, 2): the greedy policy scores 500 at 150k steps (about 25 s
    on 2 CPU cores), and 480, 429, 500 at 100k.
    """
    _, config = parse_args(["--agent", "PPO", "-mts", "150000", "--log-dir", str(tmp_path)])
    assert (config.nb_env, config.exp_length, config.optimizer) == (4, 128, "adam")
    result = train_local(config, show_progress=False)
    (evaluation,) = evaluate_checkpoints(
        result.run_dir, [result.last_checkpoint], episodes=20, nb_env=10
    )
    assert evaluation["return"]["mean"] >= 475, evaluation["return"]


# RL Baselines3 Zoo's tuned PPO for Pendulum-v1 (hyperparams/ppo.yml): 4 envs x 1024 steps,
# gamma 0.9, GAE 0.95, 10 epochs of minibatches of 64, no entropy bonus, Adam 1e-3, clip 0.2;
# SB3's defaults where the Zoo is silent: value coefficient 0.5, no value clipping, gradients
# clipped to 0.5. The Zoo explores with gSDE; fnrl's Gaussian has a state-independent log-std
# and normalizes observations with running statistics instead.
PENDULUM_PPO = [
    "--agent", "PPO", "--env-id", "Pendulum-v1", "--nb-env", "4", "--exp-length", "1024",
    "--discount", "0.9", "--tau", "0.95", "--epochs", "10", "--minibatches", "64",
    "--entropy-coef", "0", "-lr", "1e-3", "--policy-clipping", "0.2", "--value-coef", "0.5",
    "--clip-value", "false", "--max-grad-norm", "0.5", "--zscore-norm-env", "true",
]  # fmt: skip


@pytest.mark.slow
def test_ppo_with_a_gaussian_policy_swings_up_pendulum(tmp_path):
    """The Zoo's PPO scores -172.2 ± 104.2 (greedy) on Pendulum-v1 after 100k steps
    (benchmark.md); the test asks for its mean minus one std, -276.4, at the same budget.

    Measured (greedy, 20 episodes): -241.4 on seed 0 (about 25 s on 2 CPU cores); seed 2 scores
    -205.7 and seed 1 -875.1: without gSDE's state-dependent exploration some seeds have not
    found the swing-up by 100k steps.
    """
    _, config = parse_args([*PENDULUM_PPO, "-mts", "100000", "--log-dir", str(tmp_path)])
    result = train_local(config, show_progress=False)
    (evaluation,) = evaluate_checkpoints(
        result.run_dir, [result.last_checkpoint], episodes=20, nb_env=10
    )
    assert evaluation["return"]["mean"] >= -276.4, evaluation["return"]


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "HalfCheetah-v4"])
def test_continuous_envs_get_cleanrls_mujoco_settings(env_id):
    """CleanRL's ppo_continuous_action.py: 2048 steps per rollout, 10 epochs of 32 minibatches,
    Adam 3e-4, value coefficient 0.5, no entropy bonus, normalized observations."""
    _, config = parse_args(["--agent", "PPO", "--env-id", env_id])
    assert (config.nb_env * config.exp_length, config.epochs, config.minibatches) == (2048, 10, 32)
    assert (config.learning_rate, config.value_coef, config.entropy_coef) == (3e-4, 0.5, 0.0)
    assert (config.optimizer, config.tau, config.max_grad_norm) == ("adam", 0.95, 0.5)
    assert config.zscore_norm_env and config.discount == 0.99
    _, config = parse_args(["--agent", "PPO", "--env-id", env_id, "--epochs", "3"])
    assert config.epochs == 3  # flags win


@pytest.mark.slow
def test_ppo_learns_pendulum_from_the_bare_command(tmp_path):
    """The continuous preset at γ 0.99 (tuned for MuJoCo, not for Pendulum's γ 0.9) swings
    Pendulum-v1 up within 200k steps: a random policy scores about -1200, the test asks for
    -450. Measured (greedy, 20 episodes): -307.7, -320.1, -373.1 on seeds 0, 1, 2 (about 40 s
    each on 2 CPU cores)."""
    argv = ["--agent", "PPO", "--env-id", "Pendulum-v1", "-mts", "200000"]
    _, config = parse_args([*argv, "--log-dir", str(tmp_path)])
    result = train_local(config, show_progress=False)
    (evaluation,) = evaluate_checkpoints(
        result.run_dir, [result.last_checkpoint], episodes=20, nb_env=10
    )
    assert evaluation["return"]["mean"] >= -450, evaluation["return"]
