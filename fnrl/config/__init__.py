"""Training configuration: frozen dataclasses of settings, adept's flags and proven defaults.

Each field carries its command-line flags and help text (:func:`fnrl.settings.setting`);
``fnrl.train`` builds its parser from them, so ``--help`` and the fields never disagree. The
fields are grouped in sections by the part of a run that reads them (:mod:`fnrl.config.sections`:
:class:`EnvSettings`, :class:`NetworkSettings`, :class:`OptimizerSettings`,
:class:`RolloutSettings`, :class:`RunSettings`, :class:`CheckpointSettings`,
:class:`LoggingSettings`, :class:`EvalSettings`). :class:`TrainConfig` holds them all
(``config.nb_env``), a mode's config adds its own section (:class:`ToweredSettings`,
:class:`ImpalaSettings`), and ``config.section(NetworkSettings)`` gives a part of the run only
its section.

Field defaults are adept's (heronsystems/adeptRL, 2018), tuned for Atari; the defaults of
other kinds of env are presets (:mod:`fnrl.config.presets`, :data:`PRESETS`), which
:func:`make_config` applies under the flags a user gives. The resulting config holds every
effective value and is saved as ``config.json``.

Each field also declares the values it may take (a range, choices, a safe path component;
floats must be finite), and every config checks them when it is made
(:func:`fnrl.settings.check_settings`): flags, presets and a stored ``config.json`` read back
(:func:`stored_config`) go through the same check, whose :class:`ConfigError` names the field.
"""

from fnrl.config.make import (
    agent_config_class,
    make_config,
    read_stored_config,
    stored_config,
    with_agent_settings,
)
from fnrl.config.modes import (
    MODE_CONFIGS,
    SECTIONS,
    ImpalaConfig,
    ImpalaSettings,
    ToweredConfig,
    ToweredSettings,
    TrainConfig,
    config_mode,
    flags_of,
    long_flag,
)
from fnrl.config.presets import (
    CONTINUOUS_PRESET,
    OLD_RUN_VALUES,
    PRESET_SOURCES,
    PRESETS,
    SMALL_IMAGE_PRESET,
    VECTOR_PRESET,
    preset,
)
from fnrl.config.sections import (
    MAX_LEARNING_RATE,
    MAX_SEED,
    ROLLOUTS,
    CheckpointSettings,
    EnvSettings,
    EvalSettings,
    LoggingSettings,
    NetworkSettings,
    OptimizerSettings,
    RolloutSettings,
    RunSettings,
)
from fnrl.settings import (
    ConfigError,
    check_settings,
    field_error,
    field_kind,
    setting,
    value_problem,
)

__all__ = [
    "CONTINUOUS_PRESET",
    "MAX_LEARNING_RATE",
    "MAX_SEED",
    "MODE_CONFIGS",
    "OLD_RUN_VALUES",
    "PRESETS",
    "PRESET_SOURCES",
    "ROLLOUTS",
    "SECTIONS",
    "SMALL_IMAGE_PRESET",
    "VECTOR_PRESET",
    "CheckpointSettings",
    "ConfigError",
    "EnvSettings",
    "EvalSettings",
    "ImpalaConfig",
    "ImpalaSettings",
    "LoggingSettings",
    "NetworkSettings",
    "OptimizerSettings",
    "RolloutSettings",
    "RunSettings",
    "ToweredConfig",
    "ToweredSettings",
    "TrainConfig",
    "agent_config_class",
    "check_settings",
    "config_mode",
    "field_error",
    "field_kind",
    "flags_of",
    "long_flag",
    "make_config",
    "preset",
    "read_stored_config",
    "setting",
    "stored_config",
    "value_problem",
    "with_agent_settings",
]
