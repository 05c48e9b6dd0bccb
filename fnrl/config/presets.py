"""The defaults of each kind of env, applied under the flags a user gives.

adept's Atari settings do not suit low-dimensional control: an LSTM with batch norm over the
env batch learns CartPole slowly (about 90 mean return after 1M steps).
So the defaults depend on the kind of env (``fnrl.envs.env_kind``): images keep adept's,
small images :data:`SMALL_IMAGE_PRESET`, vectors :data:`VECTOR_PRESET`, continuous actions
:data:`CONTINUOUS_PRESET`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fnrl.agents import get_agent
from fnrl.config.modes import TrainConfig

# A2C for vector observations as RL Baselines3 Zoo runs it (DLR-RM/rl-baselines3-zoo,
# hyperparams/a2c.yml for CartPole-v1, Acrobot-v1 and MountainCar-v0, over stable-baselines3's
# A2C defaults): 16 envs (the Zoo's Acrobot-v1 and MountainCar-v0 setting), 5-step rollouts,
# gradients clipped to 0.5, 500k steps, a small feed-forward network (here adept's Linear body,
# 512 units), and observations normalized with running statistics (--zscore-norm-env; the Zoo's
# `normalize: true`, VecNormalize, on Acrobot-v1 and MountainCar-v0). Learning rate, discount,
# GAE lambda and entropy weight stay adept's, which equal the Zoo's except the entropy weight
# (0.01 instead of 0). Normalization is layer norm, per sample: batch statistics over the env
# batch hide what all envs share, which low-dimensional control needs (batch norm cannot balance
# CartPole). Measured on seeds 0, 1, 2 (greedy means over 50 games): observation normalization
# makes MountainCar-v0 learn (-129, -132, -132; -200 without: its velocity, about 0.01 in size,
# is invisible to the network otherwise), Acrobot-v1 reaches -85, -80, -82 (about -83 without
# it) and CartPole-v1 500; without layer norm, Acrobot-v1's seed 2 does not learn (-500; near
# -160 before observation normalization).
VECTOR_PRESET: dict[str, Any] = {
    "nb_env": 16,
    "exp_length": 5,
    "network_body": "Linear",
    "normalize": True,
    "normalization": "layer",
    "zscore_norm_env": True,
    "max_grad_norm": 0.5,
    "max_train_steps": 500_000,
    "eval_every": 25_000,
    "epoch_len": 100_000,  # five checkpoints per run
}

# Continuous actions (a Gaussian head) on vector observations: the vector preset without the
# entropy bonus, which on a Gaussian only widens it (the Zoo and CleanRL use none for
# continuous control).
CONTINUOUS_PRESET: dict[str, Any] = {**VECTOR_PRESET, "entropy_coef": 0.0}

# Small screens (MinAtar's 10x10 boards), which adept's trunks shrink to nothing: the MinAtar
# trunk (Young & Tian 2019's network) under the vector preset's rollouts, layer norm and
# clipping, for the paper's 5M frames. Measured on MinAtar/Breakout-v1, seed 0: a recent return
# of 5.4 after 300k steps (random play: 0.41; tests/envs/test_minatar.py).
SMALL_IMAGE_PRESET: dict[str, Any] = {
    **{
        name: VECTOR_PRESET[name]
        for name in ("nb_env", "exp_length", "network_body", "normalization", "max_grad_norm")
    },
    "vision_network": "MinAtar",
    "max_train_steps": 5_000_000,
    "eval_every": 100_000,
}

# The defaults of each kind of env (fnrl.envs.ENV_KINDS), under the flags given.
# Images (Atari) keep adept's defaults, the field defaults of TrainConfig.
PRESETS: dict[str, dict[str, Any]] = {
    "image": {},
    "small_image": SMALL_IMAGE_PRESET,
    "vector": VECTOR_PRESET,
    "continuous": CONTINUOUS_PRESET,
}

# What -h says about each kind: the envs of that kind, and where its defaults come from.
PRESET_SOURCES: dict[str, tuple[str, str]] = {
    "image": ("Images (Atari and other rank-3 screens)", "adept's Atari settings"),
    "small_image": (
        "Small images (screens under 36 pixels on a side, such as MinAtar's 10x10 boards)",
        "the MinAtar network of Young & Tian 2019 under the vector preset's rollouts "
        "(see fnrl.config.SMALL_IMAGE_PRESET)",
    ),
    "vector": (
        "Vectors with discrete actions (classic control, Box2D, toy text)",
        "A2C as RL Baselines3 Zoo runs it on classic control (observations normalized with "
        "running statistics), with layer norm as measured (see fnrl.config.VECTOR_PRESET)",
    ),
    "continuous": (
        "Continuous actions (MuJoCo, Pendulum and other Box actions)",
        "the vector preset without an entropy bonus (see fnrl.config.CONTINUOUS_PRESET)",
    ),
}

# The value that runs saved before a field existed trained with, for the fields whose preset
# value now differs from it: a config.json without the field gets this value, not the preset's.
OLD_RUN_VALUES: dict[str, Any] = {"zscore_norm_env": False, "eval_every": 0}


def preset(kind: str, agent: str | None = None) -> dict[str, Any]:
    """The defaults of envs of ``kind``, applied under the flags a user gives.

    Args:
        kind: a kind of env, as :func:`fnrl.envs.env_kind` returns.
        agent: a registered agent whose own preset for ``kind`` goes over the shared one;
            None for the shared one alone.

    Returns:
        Field name -> default; empty for images, which keep adept's defaults (unless the
        agent's preset says otherwise). With an agent, only the fields its runs have: a shared
        agent setting (``entropy_coef``) is left out for an agent without it.

    Raises:
        ValueError: an unknown kind or agent.
    """
    if kind not in PRESETS:
        raise ValueError(f"unknown kind of env {kind!r}; choose one of: {', '.join(PRESETS)}")
    if agent is None:
        return dict(PRESETS[kind])
    plugin = get_agent(agent)
    fields = {f.name for cls in (TrainConfig, plugin.settings) for f in dataclasses.fields(cls)}
    shared = {name: value for name, value in PRESETS[kind].items() if name in fields}
    return {**shared, **plugin.presets.get(kind, {})}
