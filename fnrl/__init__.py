"""fnrl: reinforcement learning in JAX with adept's agents, networks and execution modes.

Pure functions live in ``fnrl.losses``, ``fnrl.distributions``, ``fnrl.agents``,
``fnrl.networks`` and ``fnrl.replay``; environments, threads, devices and files live in
``fnrl.envs``, ``fnrl.parallel`` and the command lines (``python -m fnrl.train``).
"""

import fnrl._startup  # noqa: F401 (first: Ctrl-C while the rest imports ends quietly)
from fnrl import agents, distributions, losses, networks, replay, specs, types
from fnrl.agents import Agent, make_actor_critic, make_update
from fnrl.config import TrainConfig, make_config
from fnrl.distributions import Gaussian
from fnrl.networks import ModularNetwork, NetworkOutput
from fnrl.specs import ArraySpec, BoxSpec, DiscreteSpec, EnvSpec
from fnrl.types import EpisodeStats, TimeStep, TrainState, Trajectory

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "ArraySpec",
    "BoxSpec",
    "DiscreteSpec",
    "EnvSpec",
    "EpisodeStats",
    "Gaussian",
    "ModularNetwork",
    "NetworkOutput",
    "TimeStep",
    "TrainConfig",
    "TrainState",
    "Trajectory",
    "agents",
    "distributions",
    "losses",
    "make_actor_critic",
    "make_config",
    "make_update",
    "networks",
    "replay",
    "specs",
    "types",
]
