"""The agents the modes can run: plug-ins, each with its own settings and defaults.

An :class:`AgentPlugin` is what a mode needs of an agent besides its pure functions: how to
build them from a run's config, which settings (fields with flags and help, as
``fnrl.config.TrainConfig``'s) the agent adds to the config, and which of the run's defaults it
changes. ``python -m fnrl.train --agent NAME -h`` lists the run's flags and that agent's own.
fnrl's agents are registered by :mod:`fnrl.agents`; a script registers its own with
:func:`register_agent` before it trains (see ``examples/``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn

from fnrl.agents.base import Agent
from fnrl.plugins import UNKNOWN_NAME_HINT
from fnrl.settings import check_settings, setting
from fnrl.specs import EnvSpec


class AgentPlugin(NamedTuple):
    """An agent as the modes run it.

    Attributes:
        make: ``make(network, spec, config) -> Agent``; reads the agent's settings off
            ``config``, which holds the run's fields and the agent's. The ``Agent`` declares
            its data path (``Agent.data_path``: on-policy segments by default, or its own
            experience, such as a replay buffer), which every mode calls.
        settings: a frozen dataclass of the agent's own fields, each made with
            :func:`fnrl.settings.setting`; its ``__post_init__``, if any, validates them.
        defaults: run (or settings) field -> the agent's default, where it differs.
        presets: kind of env (``"image"``, ``"vector"``, ``"continuous"``) -> field -> default
            for envs of that kind, over the shared ``fnrl.config.PRESETS`` and under the flags
            given.
        help: one line for ``-h``.
    """

    make: Callable[[nn.Module, EnvSpec, Any], Agent]
    settings: type
    defaults: Mapping[str, Any] = {}
    presets: Mapping[str, Mapping[str, Any]] = {}
    help: str = ""


AGENTS: dict[str, AgentPlugin] = {}


def register_agent(name: str, plugin: AgentPlugin) -> None:
    """Makes ``plugin`` runnable as ``--agent name`` (replacing one of that name).

    Raises:
        TypeError: ``plugin.settings`` is not a dataclass.
    """
    if not dataclasses.is_dataclass(plugin.settings):
        raise TypeError(f"the settings of agent {name!r} must be a dataclass")
    AGENTS[name] = plugin


def get_agent(name: str) -> AgentPlugin:
    """The plug-in registered as ``name``.

    Raises:
        ValueError: no agent of that name (naming the registered ones).
    """
    if name not in AGENTS:
        raise ValueError(
            f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}; {UNKNOWN_NAME_HINT}"
        )
    return AGENTS[name]


def from_settings(factory: Callable[..., Agent], settings: type, **renamed: str) -> Callable:
    """``make(network, spec, config)`` for an :class:`AgentPlugin`, from an agent factory.

    Calls ``factory(network, spec, **keywords)`` with each field of ``settings`` read off
    ``config`` and passed as the keyword of its name, or as ``renamed[field]``.
    """
    names = [f.name for f in dataclasses.fields(settings)]

    def make(network: nn.Module, spec: EnvSpec, config: Any) -> Agent:
        return factory(network, spec, **{renamed.get(n, n): getattr(config, n) for n in names})

    return make


@dataclass(frozen=True)
class PolicyGradientSettings:
    """The settings fnrl's actor-critic agents share (adept's flags and defaults)."""

    discount: float = setting(
        0.99, "discount factor gamma", "--discount", at_least=0.0, at_most=1.0
    )
    tau: float = setting(
        1.0,
        "lambda of the GAE advantages (V-trace: of the trace coefficients)",
        "--tau",
        at_least=0.0,
        at_most=1.0,
    )
    normalize_advantage: bool = setting(
        False, "normalize advantages (unbiased std + 1e-5)", "-na", "--normalize-advantage"
    )
    # A negative weight would reward certainty, never what an entropy bonus means.
    entropy_coef: float = setting(0.01, "entropy bonus weight", "--entropy-coef", at_least=0.0)

    def __post_init__(self):
        # The settings made alone check themselves as a run's config does; subclasses add their
        # own invariants after super().__post_init__().
        check_settings(type(self), vars(self))
