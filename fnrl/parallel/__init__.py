"""Execution modes: where jit, devices, threads and environments meet (impure)."""

from fnrl.parallel.local import make_agent, make_training_env, train_local
from fnrl.parallel.rollout import Episode, PhaseTimer, RolloutResult, collect
from fnrl.parallel.run import RunResult, TrainingDiverged, TrainingRun

__all__ = [
    "Episode",
    "PhaseTimer",
    "RolloutResult",
    "RunResult",
    "TrainingDiverged",
    "TrainingRun",
    "collect",
    "make_agent",
    "make_training_env",
    "train_local",
]
