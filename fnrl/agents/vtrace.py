"""Off-policy actor-critic with V-trace: adept's ActorCriticVtrace as pure functions.

Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures". The learner re-runs the network over each trajectory that actors
collected with an older policy and corrects for the difference with clipped importance ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl import losses
from fnrl.agents.actor_critic import actor_critic_objective, check_discounting
from fnrl.agents.base import Agent, LossOutput, make_act, make_init, unroll
from fnrl.agents.registry import AgentPlugin, PolicyGradientSettings, from_settings
from fnrl.distributions import joint_log_prob, used_actions
from fnrl.settings import setting
from fnrl.specs import EnvSpec
from fnrl.types import Params, Trajectory


def make_actor_critic_vtrace(
    network: nn.Module,
    spec: EnvSpec,
    *,
    discount: float = 0.99,
    gae_lambda: float = 1.0,
    normalize_advantage: bool = False,
    entropy_coef: float = 0.01,
    clip_rho_threshold: float = 1.0,
    clip_c_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
) -> Agent:
    """Builds adept's IMPALA agent (ActorCriticVtrace) around ``network``.

    The loss over a T-step trajectory of B envs, averaged over the steps that carry learning
    signal (the automatic-reset steps are masked out, as in ``make_actor_critic``):
    ``policy_loss + value_loss + entropy_coef * entropy_loss`` where

    * ``ρ_t = π(a_t|x_t) / μ(a_t|x_t)``, the ratio of the learned policy π (recomputed by
      unrolling the network from the trajectory's initial carry, reset where ``first``) to the
      behaviour policy μ (``trajectory.behaviour_logits``), multiplied over action keys;
    * ``v_t`` and ``A_t`` are the V-trace targets and policy-gradient advantages of
      :func:`fnrl.losses.vtrace` with thresholds ρ̄, c̄ and ρ̄_pg;
    * ``policy_loss = -log π(a_t|x_t) * A_t`` summed over action keys;
    * ``value_loss = 0.5 * (v_t - V(x_t))^2`` (the baseline cost);
    * ``entropy_loss = -H(π(.|x_t))`` summed over action keys.

    A terminated episode does not bootstrap (``discount_t = 0``); a time-limit truncation
    bootstraps from the value of the truncated observation and cuts the trace there. Metrics
    add ``importance``, the mean ``ρ_t`` (adept's), which is 1 on-policy; the update's
    ``explained_variance`` is that of the V-trace targets ``v_t`` by the values ``V(x_t)``
    before the step, over the valid steps (:func:`fnrl.losses.explained_variance`).

    Args:
        network: a ``ModularNetwork`` (or any module with its call signature) for ``spec``.
        spec: the environment's observation and action specs.
        discount: gamma (adept default 0.99).
        gae_lambda: λ of the trace coefficients ``c_t = λ min(c̄, ρ_t)`` (adept's ``--tau``,
            default 1.0, the paper's V-trace).
        normalize_advantage: normalize the advantages (unbiased std + 1e-5; adept default off).
        entropy_coef: entropy bonus weight (adept 0.01).
        clip_rho_threshold: ρ̄ (adept 1.0).
        clip_c_threshold: c̄ (adept 1.0).
        clip_pg_rho_threshold: ρ̄_pg (adept 1.0).

    Returns:
        The agent's pure functions.

    Raises:
        ValueError: a hyperparameter is out of range.
    """
    check_discounting(discount, gae_lambda)
    losses.check_vtrace_thresholds(clip_rho_threshold, clip_c_threshold, clip_pg_rho_threshold)

    def loss(params: Params, trajectory: Trajectory) -> tuple[jax.Array, LossOutput]:
        outputs, state = unroll(
            network, params, trajectory.initial_carry, trajectory.obs, trajectory.first
        )
        values = outputs.value  # [T + 1, B]
        valid_t = ~trajectory.first[1:]
        discount_t = discount * (1.0 - trajectory.terminated.astype(jnp.float32))
        lambda_t = gae_lambda * (1.0 - trajectory.truncated.astype(jnp.float32))
        # The ratios are constants of the loss: gradients flow through log π in the losses only.
        policy_t = jax.tree.map(lambda x: jax.lax.stop_gradient(x[:-1]), outputs.logits)
        used = used_actions(spec.actions, trajectory.actions)
        log_rho_t = joint_log_prob(policy_t, trajectory.actions, used) - joint_log_prob(
            trajectory.behaviour_logits, trajectory.actions, used
        )
        rho_t = jnp.exp(log_rho_t)
        vtrace = losses.vtrace(
            trajectory.rewards,
            discount_t,
            values,
            rho_t,
            lambda_t,
            clip_rho_threshold=clip_rho_threshold,
            clip_c_threshold=clip_c_threshold,
            clip_pg_rho_threshold=clip_pg_rho_threshold,
        )
        advantages_t = vtrace.pg_advantages
        if normalize_advantage:
            advantages_t = losses.normalize_advantages(advantages_t, valid_t)

        total, metrics = actor_critic_objective(
            outputs, trajectory, advantages_t, vtrace.targets, valid_t, entropy_coef, used
        )
        metrics["importance"] = losses.masked_mean(rho_t, valid_t)
        fit = losses.ValueFit(vtrace.targets, values[:-1], valid_t)
        return total, LossOutput(metrics, state, count=valid_t.sum(), value_fit=fit)

    return Agent(
        init=make_init(network, spec),
        initial_carry=network.initial_carry,
        act=make_act(network),
        loss=loss,
    )


@dataclass(frozen=True)
class VtraceSettings(PolicyGradientSettings):
    """ActorCriticVtrace's settings: the shared ones and V-trace's clipping thresholds."""

    clip_rho_threshold: float = setting(
        1.0,
        "V-trace's rho-bar: the clip of the importance weights of the value targets",
        "--rho-bar",
    )
    clip_c_threshold: float = setting(
        1.0, "V-trace's c-bar: the clip of the trace coefficients", "--c-bar"
    )
    clip_pg_rho_threshold: float = setting(
        1.0, "V-trace's rho-bar of the policy-gradient advantages", "--pg-rho-bar"
    )

    def __post_init__(self):
        super().__post_init__()
        losses.check_vtrace_thresholds(
            self.clip_rho_threshold, self.clip_c_threshold, self.clip_pg_rho_threshold
        )


ACTOR_CRITIC_VTRACE = AgentPlugin(
    from_settings(make_actor_critic_vtrace, VtraceSettings, tau="gae_lambda"),
    VtraceSettings,
    help="adept's IMPALA agent: actor-critic with V-trace",
)
