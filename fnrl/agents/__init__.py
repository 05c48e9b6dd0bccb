"""Agents: algorithms as NamedTuples of pure functions."""

from fnrl.agents.actor_critic import ACTOR_CRITIC, make_actor_critic
from fnrl.agents.base import (
    SEGMENTS,
    ActOutput,
    Agent,
    DataPath,
    LossOutput,
    data_path,
    greedy_actions,
    init_train_state,
    make_act,
    make_init,
    make_learner_update,
    make_update,
    sample_actions,
    unroll,
)
from fnrl.agents.ppo import PPO, make_ppo
from fnrl.agents.registry import AGENTS, AgentPlugin, get_agent, register_agent
from fnrl.agents.vtrace import ACTOR_CRITIC_VTRACE, make_actor_critic_vtrace

register_agent("ActorCritic", ACTOR_CRITIC)
register_agent("ActorCriticVtrace", ACTOR_CRITIC_VTRACE)
register_agent("PPO", PPO)

__all__ = [
    "AGENTS",
    "SEGMENTS",
    "ActOutput",
    "Agent",
    "AgentPlugin",
    "DataPath",
    "LossOutput",
    "data_path",
    "get_agent",
    "greedy_actions",
    "init_train_state",
    "make_act",
    "make_init",
    "make_actor_critic",
    "make_actor_critic_vtrace",
    "make_learner_update",
    "make_ppo",
    "make_update",
    "register_agent",
    "sample_actions",
    "unroll",
]
