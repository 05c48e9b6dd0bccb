"""Proximal Policy Optimization with clipped surrogate objective, as pure functions.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms", with GAE(λ) advantages
(Schulman et al. 2016) and the clipped value loss of OpenAI Baselines' ``ppo2``. Each learner
step takes one rollout: it values the rollout once with the acting parameters
(:func:`make_ppo`'s ``prepare``), then runs ``epochs`` passes of shuffled minibatches over it.
Feed-forward networks draw minibatches of single steps from the whole ``[T, B]`` rollout;
recurrent ones minibatch whole env sequences, so that the body re-runs each sequence from the
carry it was acted with. Defaults: adept's ``PPO`` (rollout 128, 4 epochs of 4 minibatches,
GAE 0.95, clip 0.2, normalized advantages, entropy 0.01, gradient norm 0.5) and CleanRL's
``ppo_atari.py`` where adept is silent (the clipped value loss, advantages normalized per
minibatch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl import losses
from fnrl.agents.actor_critic import check_discounting
from fnrl.agents.base import Agent, LossOutput, make_act, make_init, unroll
from fnrl.agents.registry import AgentPlugin, PolicyGradientSettings, from_settings
from fnrl.distributions import joint_log_prob, used_actions
from fnrl.settings import setting
from fnrl.specs import EnvSpec
from fnrl.types import Action, Carry, Observation, Params, PRNGKey, Trajectory


class PPOBatch(NamedTuple):
    """A rollout prepared for PPO's minibatches: every field is time-major ``[T, B]`` first."""

    obs: Observation  # name -> [T, B, ...], the observations the actions were taken in
    first: jax.Array  # [T, B] bool
    actions: Action  # name -> [T, B]
    valid: jax.Array  # [T, B] bool: the step carries a learning signal
    log_prob: jax.Array  # [T, B]: log π_old(a_t | s_t), summed over action keys
    value: jax.Array  # [T, B]: V_old(s_t)
    advantage: jax.Array  # [T, B]: GAE(λ) under V_old
    target: jax.Array  # [T, B]: advantage + value, the λ-return
    initial_carry: Carry  # [B, ...] body state before obs[0]


def sequence_minibatches(key: PRNGKey, batch: PPOBatch, count: int) -> PPOBatch:
    """``count`` minibatches of whole env sequences: ``[count, T, B / count]`` (carry per env).

    Raises:
        ValueError: ``count`` does not divide the number of envs.
    """
    envs = batch.first.shape[1]
    if envs % count:
        raise ValueError(f"--minibatches {count} does not divide the {envs} envs of a rollout")
    order = jax.random.permutation(key, envs).reshape(count, envs // count)
    carry = jax.tree.map(lambda x: x[order], batch.initial_carry)
    steps = batch._replace(initial_carry=())
    steps = jax.tree.map(lambda x: jnp.moveaxis(x[:, order], 1, 0), steps)
    return steps._replace(initial_carry=carry)


def step_minibatches(key: PRNGKey, batch: PPOBatch, count: int) -> PPOBatch:
    """``count`` minibatches of single steps shuffled over the rollout: ``[count, 1, T B / count]``.

    For feed-forward networks, which carry nothing between steps: each minibatch is a
    one-step "rollout" of ``T B / count`` samples.

    Raises:
        ValueError: ``count`` does not divide the rollout's ``T B`` steps.
    """
    steps = batch.first.size
    if steps % count:
        raise ValueError(f"--minibatches {count} does not divide the {steps} steps of a rollout")
    order = jax.random.permutation(key, steps)
    flat = jax.tree.map(
        lambda x: x.reshape(steps, *x.shape[2:])[order], batch._replace(initial_carry=())
    )
    return jax.tree.map(lambda x: x.reshape(count, 1, steps // count, *x.shape[1:]), flat)


def make_ppo(
    network: nn.Module,
    spec: EnvSpec,
    *,
    discount: float = 0.99,
    gae_lambda: float = 0.95,
    clip: float = 0.2,
    clip_value: bool = True,
    normalize_advantage: bool = True,
    entropy_coef: float = 0.01,
    value_coef: float = 1.0,
    epochs: int = 4,
    minibatches: int = 4,
) -> Agent:
    """Builds the PPO agent around ``network``.

    The loss of a minibatch, averaged over its steps that carry a learning signal:
    ``policy_loss + value_coef * value_loss + entropy_coef * entropy_loss`` where

    * ``policy_loss`` is the negated clipped surrogate of ``ρ_t = π(a_t) / π_old(a_t)`` with
      the GAE(``gae_lambda``) advantages, normalized over the minibatch when
      ``normalize_advantage`` (:func:`fnrl.losses.clipped_surrogate_loss`);
    * ``value_loss`` is half the squared error against the λ-returns, clipped around the
      acting values when ``clip_value`` (:func:`fnrl.losses.clipped_value_loss`);
    * ``entropy_loss = -H(π(.|s_t))`` summed over action keys.

    Terminations and truncations are handled as in A2C (:func:`make_actor_critic`). The
    update's ``explained_variance`` is CleanRL's: that of the rollout's λ-returns by the values
    the acting params gave it (``prepare``), over every valid step of the rollout at once, not a
    mean over minibatches (:func:`fnrl.losses.explained_variance`, pooled by
    :func:`fnrl.agents.make_update` over the minibatches of one pass).

    Args:
        network: a ``ModularNetwork`` (or any module with its call signature) for ``spec``.
        spec: the environment's observation and action specs.
        discount: gamma.
        gae_lambda: GAE λ (adept 0.95).
        clip: the clipping range ε of the ratio and of the value (adept 0.2).
        clip_value: clip the value loss (CleanRL's default).
        normalize_advantage: standardize advantages per minibatch (unbiased std + 1e-5).
        entropy_coef: entropy bonus weight (adept 0.01).
        value_coef: weight of the value loss (adept 1.0, with the loss's factor one half).
        epochs: passes over each rollout (adept 4).
        minibatches: minibatches per pass (adept 4).

    Returns:
        The agent's pure functions; its ``prepare`` values a rollout once with the acting
        params, its ``loss`` takes one minibatch of the prepared batch.

    Raises:
        ValueError: a setting out of its range.
    """
    check_discounting(discount, gae_lambda)
    if clip <= 0:
        raise ValueError(f"the PPO clip range must be positive, got {clip}")
    if epochs < 1 or minibatches < 1:
        raise ValueError(f"epochs and minibatches must be at least 1, got {epochs}, {minibatches}")
    recurrent = bool(jax.tree.leaves(network.initial_carry(1)))
    split = sequence_minibatches if recurrent else step_minibatches

    def prepare(params: Params, trajectory: Trajectory) -> tuple[PPOBatch, Params]:
        outputs, state = unroll(
            network, params, trajectory.initial_carry, trajectory.obs, trajectory.first
        )
        values = jax.lax.stop_gradient(outputs.value)  # [T + 1, B]
        discount_t = discount * (1.0 - trajectory.terminated.astype(jnp.float32))
        bootstrap_t = 1.0 - trajectory.truncated.astype(jnp.float32)
        advantage = losses.gae_advantages(
            trajectory.rewards, discount_t, values, lambda_=gae_lambda * bootstrap_t
        )
        batch = PPOBatch(
            obs=jax.tree.map(lambda x: x[:-1], trajectory.obs),
            first=trajectory.first[:-1],
            actions=trajectory.actions,
            valid=~trajectory.first[1:],
            log_prob=joint_log_prob(
                trajectory.behaviour_logits,
                trajectory.actions,
                used_actions(spec.actions, trajectory.actions),
            ),
            value=values[:-1],
            advantage=advantage,
            target=advantage + values[:-1],
            initial_carry=trajectory.initial_carry,
        )
        return batch, state

    def loss(params: Params, batch: PPOBatch) -> tuple[jax.Array, LossOutput]:
        outputs, _ = unroll(network, params, batch.initial_carry, batch.obs, batch.first)
        advantage = batch.advantage
        if normalize_advantage:
            advantage = losses.normalize_advantages(advantage, batch.valid)
        used = used_actions(spec.actions, batch.actions)
        log_ratio = joint_log_prob(outputs.logits, batch.actions, used) - batch.log_prob
        policy_loss = losses.clipped_surrogate_loss(log_ratio, advantage, clip, batch.valid)
        if clip_value:
            value_loss = losses.clipped_value_loss(
                outputs.value, batch.value, batch.target, clip, batch.valid
            )
        else:
            value_loss = losses.value_loss(outputs.value, batch.target, batch.valid)
        entropy_loss = sum(
            losses.entropy_loss(outputs.logits[name], batch.valid, used[name])
            for name in batch.actions
        )
        total = policy_loss + value_coef * value_loss + entropy_coef * entropy_loss
        clipped = jnp.abs(jnp.exp(log_ratio) - 1.0) > clip
        metrics = {
            "total_loss": total,
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            # Weighted by its coefficient, as adept logs it (the value loss is logged unweighted).
            "entropy_loss": entropy_coef * entropy_loss,
            "value": losses.masked_mean(outputs.value, batch.valid),
            "advantage": losses.masked_mean(batch.advantage, batch.valid),
            # Schulman's unbiased low-variance estimator of KL(π_old || π).
            "approx_kl": losses.masked_mean(jnp.expm1(log_ratio) - log_ratio, batch.valid),
            "clip_fraction": losses.masked_mean(clipped.astype(jnp.float32), batch.valid),
        }
        # The rollout's own values and returns, whatever the params have become since: each
        # minibatch reports its part and the update pools one pass of them.
        fit = losses.ValueFit(batch.target, batch.value, batch.valid)
        return total, LossOutput(metrics, {}, count=batch.valid.sum(), value_fit=fit)

    return Agent(
        init=make_init(network, spec),
        initial_carry=network.initial_carry,
        act=make_act(network),
        loss=loss,
        prepare=prepare,
        minibatches=lambda key, batch: split(key, batch, minibatches),
        epochs=epochs,
    )


@dataclass(frozen=True)
class PPOSettings(PolicyGradientSettings):
    """PPO's settings: the shared ones (λ 0.95 and normalized advantages by default) and its own."""

    policy_clipping: float = setting(
        0.2,
        "PPO's clip range epsilon of the probability ratio and the value",
        "--policy-clipping",
        above=0.0,
    )
    clip_value: bool = setting(True, "clip the value loss around the acting values", "--clip-value")
    value_coef: float = setting(1.0, "weight of the value loss", "--value-coef", at_least=0.0)
    epochs: int = setting(
        4, "passes over each rollout", "--epochs", "--num-epochs-per-update", at_least=1
    )
    minibatches: int = setting(
        4, "minibatches per pass", "--minibatches", "--minibatches-per-update", at_least=1
    )


PPO = AgentPlugin(
    from_settings(make_ppo, PPOSettings, tau="gae_lambda", policy_clipping="clip"),
    PPOSettings,
    # adept's PPO; Adam with CleanRL's learning rate and epsilon, where adept is silent.
    defaults={
        "tau": 0.95,
        "normalize_advantage": True,
        "exp_length": 128,
        "nb_env": 8,
        "max_grad_norm": 0.5,
        "optimizer": "adam",
        "learning_rate": 2.5e-4,
    },
    # CleanRL's ppo.py on classic control: 4 envs of 128-step rollouts, raw observations (with
    # running normalization PPO's greedy CartPole return at 150k steps drops from 500 to 193).
    presets={
        "vector": {"nb_env": 4, "exp_length": 128, "zscore_norm_env": False},
        # CleanRL's ppo_continuous_action.py on MuJoCo: 2048 steps per rollout (4 envs x 512
        # here, 1 x 2048 there), 10 epochs of 32 minibatches, Adam 3e-4, value coefficient 0.5,
        # no entropy bonus; running observation normalization from the continuous preset.
        "continuous": {
            "nb_env": 4,
            "exp_length": 512,
            "epochs": 10,
            "minibatches": 32,
            "learning_rate": 3e-4,
            "value_coef": 0.5,
        },
    },
    help="PPO (Schulman et al. 2017): clipped surrogate, epochs of shuffled minibatches",
)
