"""Advantage actor-critic with GAE: adept's ActorCritic as pure functions.

Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning" (A2C, the synchronous
form of A3C), with advantages from Schulman et al. 2016, "High-Dimensional Continuous Control
Using Generalized Advantage Estimation".
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl import losses
from fnrl.agents.base import Agent, LossOutput, make_act, make_init, unroll
from fnrl.agents.registry import AgentPlugin, PolicyGradientSettings, from_settings
from fnrl.distributions import used_actions
from fnrl.networks import NetworkOutput
from fnrl.settings import setting
from fnrl.specs import EnvSpec
from fnrl.types import Params, Trajectory


def check_discounting(discount: float, gae_lambda: float) -> None:
    """Raises ``ValueError`` unless the discount and the GAE λ are in [0, 1]."""
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must be in [0, 1], got {discount}")
    if not 0.0 <= gae_lambda <= 1.0:
        raise ValueError(f"gae_lambda (--tau) must be in [0, 1], got {gae_lambda}")


def actor_critic_objective(
    outputs: NetworkOutput,
    trajectory: Trajectory,
    advantages_t: jax.Array,
    value_targets_t: jax.Array,
    valid_t: jax.Array,
    entropy_coef: float,
    used: dict[str, jax.Array | None] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The actor-critic objective over the valid steps of a trajectory, and its metrics.

    ``policy_loss + value_loss + entropy_coef * entropy_loss``: the policy gradient
    ``-log π(a_t) A_t`` summed over action keys, half the squared error of the values against
    their targets, and the negative entropy summed over action keys, each averaged over the
    ``[T, B]`` steps where ``valid_t`` (Mnih et al. 2016, "Asynchronous Methods for Deep
    Reinforcement Learning"; adept's ``ActorCritic`` and ``ActorCriticVtrace`` losses).

    Args:
        outputs: the network unrolled over the trajectory: a policy ``[T + 1, B, ...]`` per
            action key (logits or a ``Gaussian``), values ``[T + 1, B]``.
        trajectory: its actions ``[T, B]`` per action key.
        advantages_t: ``[T, B]``, constants of the loss.
        value_targets_t: ``[T, B]``, constants of the loss.
        valid_t: ``[T, B]`` bool, the steps that carry a learning signal.
        entropy_coef: the entropy bonus weight.
        used: per action key, ``[T, B]`` bool where the env used it
            (:func:`~fnrl.distributions.used_actions`): its log-probability and entropy count
            only there. None: every key everywhere.

    Returns:
        The scalar objective and name -> scalar metrics (the three losses, the entropy loss
        weighted by ``entropy_coef`` as adept logs it, the objective, the mean value and the
        mean advantage).
    """
    names = sorted(trajectory.actions)
    used = used or {}
    policy_t = jax.tree.map(lambda x: x[:-1], outputs.logits)  # the steps actions were taken in
    policy_loss = sum(
        losses.policy_gradient_loss(
            policy_t[name], trajectory.actions[name], advantages_t, valid_t, used.get(name)
        )
        for name in names
    )
    entropy_loss = sum(
        losses.entropy_loss(policy_t[name], valid_t, used.get(name)) for name in names
    )
    value_loss = losses.value_loss(outputs.value[:-1], value_targets_t, valid_t)
    total = policy_loss + value_loss + entropy_coef * entropy_loss
    metrics = {
        "total_loss": total,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        # Weighted, as adept logs it: the three logged losses sum to the total.
        "entropy_loss": entropy_coef * entropy_loss,
        "value": losses.masked_mean(outputs.value[:-1], valid_t),
        "advantage": losses.masked_mean(advantages_t, valid_t),
    }
    return total, metrics


def make_actor_critic(
    network: nn.Module,
    spec: EnvSpec,
    *,
    discount: float = 0.99,
    gae_lambda: float = 1.0,
    use_gae: bool = True,
    normalize_advantage: bool = False,
    entropy_coef: float = 0.01,
) -> Agent:
    """Builds adept's A2C agent around ``network``.

    The loss over a T-step trajectory of B envs, averaged over the steps that carry learning
    signal (the automatic-reset steps are masked out):
    ``policy_loss + value_loss + entropy_coef * entropy_loss`` where

    * ``policy_loss = -log pi(a_t|s_t) * A_t`` summed over action keys;
    * ``value_loss = 0.5 * (G_t - V(s_t))^2`` with ``G_t`` adept's n-step return: rewards
      discounted to the end of the rollout and bootstrapped from the value of the observation
      after it;
    * ``A_t`` is GAE(``gae_lambda``) (adept's ``--tau``), or ``G_t - V(s_t)`` without GAE,
      optionally normalized with the unbiased std + 1e-5;
    * ``entropy_loss = -H(pi(.|s_t))`` summed over action keys.

    A terminated episode does not bootstrap (``discount_t = 0``); a time-limit truncation
    bootstraps from the value of the truncated observation and cuts the GAE trace there. The
    update's ``explained_variance`` is that of the n-step returns ``G_t`` by the values
    ``V(s_t)`` before the step, over the valid steps of the trajectory
    (:func:`fnrl.losses.explained_variance`).

    Args:
        network: a ``ModularNetwork`` (or any module with its call signature) for ``spec``.
        spec: the environment's observation and action specs.
        discount: gamma (adept default 0.99).
        gae_lambda: GAE lambda, adept's ``--tau`` (default 1.0).
        use_gae: GAE advantages (adept ``-gae``, default on); otherwise n-step advantages.
        normalize_advantage: adept ``-na`` (default off).
        entropy_coef: entropy bonus weight (adept 0.01).

    Returns:
        The agent's pure functions.
    """
    check_discounting(discount, gae_lambda)

    def loss(params: Params, trajectory: Trajectory) -> tuple[jax.Array, LossOutput]:
        outputs, state = unroll(
            network, params, trajectory.initial_carry, trajectory.obs, trajectory.first
        )
        values = outputs.value  # [T + 1, B]
        valid_t = ~trajectory.first[1:]
        discount_t = discount * (1.0 - trajectory.terminated.astype(jnp.float32))
        bootstrap_t = 1.0 - trajectory.truncated.astype(jnp.float32)
        returns_t = losses.lambda_returns(
            trajectory.rewards, discount_t, values[1:], lambda_=bootstrap_t
        )
        if use_gae:
            advantages_t = losses.gae_advantages(
                trajectory.rewards, discount_t, values, lambda_=gae_lambda * bootstrap_t
            )
        else:
            advantages_t = jax.lax.stop_gradient(returns_t - values[:-1])
        if normalize_advantage:
            advantages_t = losses.normalize_advantages(advantages_t, valid_t)

        used = used_actions(spec.actions, trajectory.actions)
        total, metrics = actor_critic_objective(
            outputs, trajectory, advantages_t, returns_t, valid_t, entropy_coef, used
        )
        fit = losses.ValueFit(returns_t, values[:-1], valid_t)
        return total, LossOutput(metrics, state, count=valid_t.sum(), value_fit=fit)

    return Agent(
        init=make_init(network, spec),
        initial_carry=network.initial_carry,
        act=make_act(network),
        loss=loss,
    )


@dataclass(frozen=True)
class ActorCriticSettings(PolicyGradientSettings):
    """ActorCritic's settings: the shared ones and the choice of advantages."""

    generalized_advantage_estimation: bool = setting(
        True, "use GAE advantages (else n-step)", "-gae", "--generalized-advantage-estimation"
    )


ACTOR_CRITIC = AgentPlugin(
    from_settings(
        make_actor_critic,
        ActorCriticSettings,
        tau="gae_lambda",
        generalized_advantage_estimation="use_gae",
    ),
    ActorCriticSettings,
    help="adept's A2C: advantage actor-critic",
)
