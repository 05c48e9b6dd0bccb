"""Execution modes: where jit, devices, threads and environments meet (impure)."""

from fnrl.parallel.evaluation import (
    EvaluationThread,
    episode_quotas,
    make_eval_policy,
    run_episodes,
)
from fnrl.parallel.impala import ActorFailed, Rollout, train_impala
from fnrl.parallel.local import make_agent, make_network, make_training_env, train_local
from fnrl.parallel.resume import ActionLog, ResumableEnv, ResumeWarning, timestep_fingerprint
from fnrl.parallel.rollout import Episode, PhaseTimer, RolloutResult, collect
from fnrl.parallel.run import RunResult, TrainingDiverged, TrainingRun
from fnrl.parallel.towered import train_towered

__all__ = [
    "ActionLog",
    "ActorFailed",
    "Episode",
    "EvaluationThread",
    "PhaseTimer",
    "ResumableEnv",
    "ResumeWarning",
    "Rollout",
    "RolloutResult",
    "RunResult",
    "TrainingDiverged",
    "TrainingRun",
    "collect",
    "episode_quotas",
    "make_agent",
    "make_eval_policy",
    "make_network",
    "make_training_env",
    "run_episodes",
    "timestep_fingerprint",
    "train_impala",
    "train_local",
    "train_towered",
]
