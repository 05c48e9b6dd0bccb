"""Agents: algorithms as NamedTuples of pure functions."""

from fnrl.agents.actor_critic import make_actor_critic
from fnrl.agents.base import (
    ActOutput,
    Agent,
    LossOutput,
    greedy_actions,
    init_train_state,
    make_act,
    make_init,
    make_update,
    sample_actions,
    unroll,
)
from fnrl.agents.vtrace import make_actor_critic_vtrace

AGENTS = {"ActorCritic": make_actor_critic, "ActorCriticVtrace": make_actor_critic_vtrace}

__all__ = [
    "AGENTS",
    "ActOutput",
    "Agent",
    "LossOutput",
    "greedy_actions",
    "init_train_state",
    "make_act",
    "make_init",
    "make_actor_critic",
    "make_actor_critic_vtrace",
    "make_update",
    "sample_actions",
    "unroll",
]
