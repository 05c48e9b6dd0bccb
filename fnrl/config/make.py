"""Configs made from settings: a user's flags over presets, and a stored run's ``config.json``.

:func:`make_config` applies the env's preset (:mod:`fnrl.config.presets`) under the flags a user
gives; the resulting config holds every effective value and is saved as ``config.json``.
:func:`stored_config` reads one back. Both add the settings of the run's agent to the mode's
config (:func:`agent_config_class`), and every value goes through the same check
(:func:`fnrl.settings.check_settings`), whose ``ConfigError`` names the field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from fnrl.agents import get_agent
from fnrl.config.modes import ImpalaConfig, ToweredConfig, TrainConfig
from fnrl.config.presets import OLD_RUN_VALUES, preset
from fnrl.plugins import import_plugins
from fnrl.settings import ConfigError, check_settings, shown_value

_AGENT_CONFIGS: dict[tuple[type, str], tuple[Any, type]] = {}


def agent_config_class(base: type[TrainConfig], agent: str) -> type[TrainConfig]:
    """The config class of a run of ``agent`` in a mode: ``base`` and the agent's settings.

    Its fields are ``base``'s, then those of the agent's settings dataclass; the agent's
    ``defaults`` replace the defaults of the fields they name, so ``-h`` shows them. Built once
    per mode, agent and plug-in.

    Args:
        base: ``TrainConfig`` or a mode's subclass (or a class this function returned).
        agent: a registered agent name (``fnrl.agents.register_agent``).

    Raises:
        ValueError: an unknown agent, or settings that redefine a field of ``base``.
    """
    base = getattr(base, "mode_config", base)
    plugin = get_agent(agent)
    cached = _AGENT_CONFIGS.get((base, agent))
    if cached is not None and cached[0] is plugin:
        return cached[1]
    own = dataclasses.fields(plugin.settings)
    clashes = sorted({f.name for f in own} & set(base.__dataclass_fields__))
    if clashes:
        raise ValueError(f"the settings of agent {agent!r} redefine run fields: {clashes}")
    by_name = {**base.__dataclass_fields__, **{f.name: f for f in own}}
    defaults = {"agent": agent, **plugin.defaults}
    unknown = sorted(set(defaults) - set(by_name))
    if unknown:
        raise ValueError(f"the defaults of agent {agent!r} name unknown fields: {unknown}")
    fields = [
        (f.name, f.type, field(default=defaults.get(f.name, f.default), metadata=f.metadata))
        for f in (*own, *(by_name[name] for name in defaults if name in base.__dataclass_fields__))
    ]

    def __post_init__(self):
        base.__post_init__(self)
        check = getattr(plugin.settings, "__post_init__", None)
        if check is not None:
            check(self)

    config_class = dataclasses.make_dataclass(
        f"{base.__name__}With{agent.replace('-', '_')}",
        fields,
        bases=(plugin.settings, base),
        frozen=True,
        namespace={"__post_init__": __post_init__, "mode_config": base},
    )
    config_class.__module__ = __name__
    _AGENT_CONFIGS[(base, agent)] = (plugin, config_class)
    return config_class


def with_agent_settings(config: TrainConfig) -> TrainConfig:
    """``config`` as a config of its agent's class: with the agent's settings at their defaults.

    A config from :func:`make_config` has them already and comes back unchanged; a plain
    ``TrainConfig(...)`` gets them (the agent's ``defaults`` apply only to the fields it does
    not hold already, so nothing it sets changes), and a config whose ``agent`` was replaced
    trades the old agent's settings for the new one's.

    Raises:
        ValueError: an unknown agent.
    """
    config_class = agent_config_class(type(config), config.agent)
    if isinstance(config, config_class):
        return config
    fields = set(config_class.__dataclass_fields__)  # another agent's settings are dropped
    return config_class(
        **{name: value for name, value in config.to_dict().items() if name in fields}
    )


def make_config(config_class: type[TrainConfig] = TrainConfig, /, **settings: Any) -> TrainConfig:
    """A config from the settings a user gave, over its env's preset, over the defaults.

    The class is ``config_class`` with the settings of the agent named by ``settings["agent"]``
    (or the mode's default agent) added (:func:`agent_config_class`). The preset is the one of
    the env's kind (:func:`preset` of :func:`fnrl.envs.env_kind`), with the agent's own preset for
    that kind over it: images keep adept's defaults, vectors get :data:`VECTOR_PRESET`,
    continuous actions :data:`CONTINUOUS_PRESET`. The config returned holds every effective value.

    Args:
        config_class: ``TrainConfig`` or a mode's subclass of it.
        **settings: its fields and the agent's, given explicitly (e.g. from the command line).

    Raises:
        ConfigError: a setting does not fit its field (the message names the flag).
        ValueError: another invalid setting, or the env id is unknown.
        TypeError: an unknown field name.
    """
    # Imported here: fnrl.envs loads the simulators, which `--help` does not need.
    from fnrl.envs import env_kind

    base = getattr(config_class, "mode_config", config_class)
    agent = settings.get("agent", base.agent)
    check_settings(base, {"agent": agent})  # it decides which settings exist
    run_class = agent_config_class(base, agent)
    check_settings(run_class, settings)  # before the env id is used and an env made for its kind
    kind = env_kind(settings.get("env_id", run_class.env_id))
    return run_class(**{**preset(kind, agent), **settings})


@contextlib.contextmanager
def _naming_config_json(run_dir: str | Path, given: Collection[str] = ()) -> Iterator[None]:
    """Turns a :class:`ConfigError` of a stored value into one that names ``config.json``."""
    try:
        yield
    except ConfigError as e:
        if e.field in given:
            raise
        message = f"config.json of {run_dir}: {e.field} {e.problem}"
        raise ConfigError(message, e.field, e.problem) from None


def read_stored_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings a run stored in its ``config.json``, with its plug-ins imported.

    The modules of its ``imports`` are imported first (:func:`fnrl.plugins.import_plugins`), so
    that the agent and networks they register resolve in every command that reads a run. The
    agent is checked here because it decides the run's config class, and so which of the
    other settings exist (:func:`stored_config` checks those).

    Raises:
        ValueError: no readable ``config.json`` in ``run_dir``, or a module of its ``imports``
            that cannot be imported.
        ConfigError: it holds no JSON object, an ``imports`` that is no string, or an invalid
            agent.
    """
    path = Path(run_dir).expanduser() / "config.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{run_dir} is not a run directory: cannot read {path.name}: {e}") from e
    if not isinstance(stored, dict):
        problem = f"must hold a JSON object of settings, got {shown_value(stored)}"
        raise ConfigError(f"config.json of {run_dir} {problem}", None, problem)
    with _naming_config_json(run_dir):
        check_settings(TrainConfig, {k: v for k, v in stored.items() if k == "imports"})
    try:
        import_plugins(stored.get("imports", ""))
    except ValueError as e:
        raise ValueError(f"config.json of {run_dir}: {e}") from e
    with _naming_config_json(run_dir):
        check_settings(TrainConfig, {k: v for k, v in stored.items() if k == "agent"})
    return stored


def stored_config(
    run_dir: str | Path,
    stored: Mapping[str, Any],
    config_class: type[TrainConfig] = TrainConfig,
    **given: Any,
) -> TrainConfig:
    """The config of a stored run: its ``config.json`` settings with ``given`` over them.

    ``config.json`` records every effective value of the run, its env's preset included; fields
    it lacks (written before they existed) come from its env's preset rather than adept's Atari
    defaults, or are the values such runs trained with (:data:`OLD_RUN_VALUES`). Fields that
    ``config_class`` and the agent do not have (another mode's) are ignored, and so are those
    another mode stored in its own type (a towered run's ``gpu_id`` list, for an evaluation).

    Args:
        run_dir: the run directory, as errors name it.
        stored: its settings, from :func:`read_stored_config`.
        config_class: the mode's config class.
        **given: settings that override the stored ones (the flags of a resume).

    Raises:
        ConfigError: a stored value does not fit its field (``config.json of RUN_DIR: nb_env
            must be an integer, got "abc"``), or a given one (named by its flag).
        ValueError: another invalid setting, e.g. an unknown env id.
    """
    base = getattr(config_class, "mode_config", config_class)
    run_class = agent_config_class(base, given.get("agent", stored.get("agent", base.agent)))
    types = {f.name: f.type for f in dataclasses.fields(run_class)}
    retyped = _retyped_fields()
    settings = {
        name: value
        for name, value in stored.items()
        if name in types and not (name in retyped and type(value).__name__ != types[name])
    }
    with _naming_config_json(run_dir, given):
        return make_config(run_class, **{**OLD_RUN_VALUES, **settings, **given})


def _retyped_fields() -> set[str]:
    """Fields a mode gives another type (towered's and IMPALA's ``--gpu-id`` lists devices): a
    run of that mode stored them in its type, which another mode's evaluation ignores."""
    base = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    modes = (ToweredConfig, ImpalaConfig)
    return {
        f.name
        for mode in modes
        for f in dataclasses.fields(mode)
        if f.name in base and f.type != base[f.name]
    }
