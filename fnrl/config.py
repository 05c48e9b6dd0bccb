"""Training configuration: one frozen dataclass, adept's flags and proven defaults.

Each field carries its command-line flags and help text; ``fnrl.train`` builds its parser from
them, so ``--help`` and this file never disagree. Defaults are adept's (heronsystems/adeptRL,
2018), tuned for Atari, except ``env_id``: CartPole-v1 instead of PongNoFrameskip-v4, so that
the bare command finishes learning on a laptop CPU in minutes.

adept's Atari settings learn CartPole slowly (about 90 mean return after 1M steps with the
LSTM), so classic-control ids come with a preset of proven settings (``PRESETS``) that
:func:`make_config` applies under the flags a user gives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _flag(default: Any, help: str, *flags: str) -> Any:
    return field(default=default, metadata={"help": help, "flags": flags})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run reads; saved as ``config.json`` in the run directory."""

    env_id: str = _flag(
        "CartPole-v1",
        "environment: adept/Gym Atari ids (PongNoFrameskip-v4), envpool ids (Pong-v5, "
        "CartPole-v1) or any Gymnasium id",
        "--env-id",
    )
    nb_env: int = _flag(32, "number of parallel environments", "-n", "--nb-env")
    seed: int = _flag(0, "random seed of the network, the actions and the envs", "-s", "--seed")
    learning_rate: float = _flag(7e-4, "RMSprop learning rate", "-lr", "--learning-rate")
    discount: float = _flag(0.99, "discount factor gamma", "--discount")
    tau: float = _flag(1.0, "GAE lambda", "--tau")
    generalized_advantage_estimation: bool = _flag(
        True, "use GAE advantages (else n-step)", "-gae", "--generalized-advantage-estimation"
    )
    normalize_advantage: bool = _flag(
        False, "normalize advantages (unbiased std + 1e-5)", "-na", "--normalize-advantage"
    )
    entropy_coef: float = _flag(0.01, "entropy bonus weight", "--entropy-coef")
    max_grad_norm: float = _flag(
        0.0, "clip gradients to this global norm; 0 disables", "--max-grad-norm"
    )
    exp_length: int = _flag(
        20, "rollout length: agent steps per env per update", "--exp-length", "--nb-rollout"
    )
    max_train_steps: int = _flag(
        10_000_000,
        "stop after this many environment steps, summed over all envs",
        "-mts",
        "--max-train-steps",
    )
    epoch_len: int = _flag(
        1_000_000, "save a checkpoint every this many environment steps", "--epoch-len"
    )
    nb_top_model: int = _flag(3, "number of checkpoints to keep", "--nb-top-model")
    summary_frequency: float = _flag(
        10.0, "seconds between tensorboard writes of losses", "-sf", "--summary-frequency"
    )
    tag: str = _flag("", "prefix of the run directory name", "-t", "--tag")
    log_dir: str = _flag("/tmp/fnrl_logs", "root of the run directories", "--log-dir")
    skip_rate: int = _flag(4, "Atari frame skip", "--skip-rate")
    max_episode_length: int = _flag(
        10_000, "Atari time limit in agent steps", "-mel", "--max-episode-length"
    )
    normalize: bool = _flag(
        True, "batch norm in trunks and Linear body, layer-norm LSTM cell", "--normalize"
    )
    nb_head: int = _flag(1, "attention heads of attention networks", "--nb-head")
    vision_network: str = _flag(
        "FourConv", "trunk for image observations", "-vn", "--vision-network"
    )
    discrete_network: str = _flag(
        "Identity", "trunk for vector observations", "-dn", "--discrete-network"
    )
    network_body: str = _flag("LSTM", "network body", "-nb", "--network-body")
    agent: str = _flag("ActorCritic", "agent", "--agent")
    profile: bool = _flag(
        False, "train for 10e3 steps and print a per-phase timing report", "--profile"
    )
    debug: bool = _flag(False, "3 envs, logs under /tmp/fnrl_debug", "--debug")

    def __post_init__(self):
        positive = ("nb_env", "exp_length", "max_train_steps", "epoch_len", "nb_top_model")
        for name in (*positive, "skip_rate", "max_episode_length", "nb_head"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{long_flag(name, type(self))} must be at least 1, got {value}")
        if self.summary_frequency <= 0:
            raise ValueError(f"--summary-frequency must be positive, got {self.summary_frequency}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"--discount must be in [0, 1], got {self.discount}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"--tau must be in [0, 1], got {self.tau}")

    def effective(self) -> TrainConfig:
        """The config actually run: ``--debug`` and ``--profile`` rewrite a few fields."""
        config = self
        if self.debug:
            config = dataclasses.replace(config, nb_env=3, log_dir="/tmp/fnrl_debug")
        if self.profile:
            config = dataclasses.replace(config, max_train_steps=10_000)
        return config

    def to_dict(self) -> dict[str, Any]:
        """All fields, for ``config.json``."""
        return dataclasses.asdict(self)


# Small feed-forward network, short rollouts, more updates: A2C on classic control reaches the
# maximum return of CartPole-v1 (500) within 500k steps with these (tests/parallel/test_local.py).
CLASSIC_CONTROL_PRESET: dict[str, Any] = {
    "nb_env": 16,
    "exp_length": 5,
    "network_body": "Linear",
    "normalize": False,
    "max_grad_norm": 0.5,
    "max_train_steps": 500_000,
}

PRESETS: dict[str, dict[str, Any]] = {"CartPole-v1": CLASSIC_CONTROL_PRESET}


def make_config(config_class: type[TrainConfig] = TrainConfig, /, **settings: Any) -> TrainConfig:
    """A config from the settings a user gave, over the env's preset, over adept's defaults.

    Args:
        config_class: ``TrainConfig`` or a mode's subclass of it.
        **settings: its fields given explicitly (e.g. from the command line).

    Raises:
        ValueError: a setting is invalid (the message names the flag).
        TypeError: an unknown field name.
    """
    env_id = settings.get("env_id", config_class.env_id)
    return config_class(**{**PRESETS.get(env_id, {}), **settings})


def flags_of(name: str, config_class: type[TrainConfig] = TrainConfig) -> tuple[str, ...]:
    """The command-line flags of a config field."""
    return config_class.__dataclass_fields__[name].metadata["flags"]


def long_flag(name: str, config_class: type[TrainConfig] = TrainConfig) -> str:
    """The main long flag of a config field, e.g. ``--nb-env`` for ``nb_env``."""
    return next(flag for flag in flags_of(name, config_class) if flag.startswith("--"))
