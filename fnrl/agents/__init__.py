"""Agents: algorithms as NamedTuples of pure functions."""

from fnrl.agents.actor_critic import make_actor_critic
from fnrl.agents.base import (
    ActOutput,
    Agent,
    LossOutput,
    greedy_actions,
    init_train_state,
    make_act,
    make_update,
    sample_actions,
    unroll,
)

AGENTS = {"ActorCritic": make_actor_critic}

__all__ = [
    "AGENTS",
    "ActOutput",
    "Agent",
    "LossOutput",
    "greedy_actions",
    "init_train_state",
    "make_act",
    "make_actor_critic",
    "make_update",
    "sample_actions",
    "unroll",
]
