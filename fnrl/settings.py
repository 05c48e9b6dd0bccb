"""Settings: config fields that carry their flags, help and limits, and the check of their values.

A *setting* is a dataclass field made with :func:`setting`: its default, its ``-h`` text, its
command-line flags, and the values it may take (a range, choices, a safe path component; floats
must be finite). :func:`check_settings` checks values against them, whether they come from flags,
a preset or a stored ``config.json``, and raises a :class:`ConfigError` that names the field.

The run's config (``fnrl.config``) and each agent's settings (``fnrl.agents``) are made of
settings. This module is pure: it imports nothing of fnrl above the pure layer, so that the
agents can declare their settings without importing the run shell.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import field
from typing import Any

from fnrl.plugins import UNKNOWN_NAME_HINT


class ConfigError(ValueError):
    """A setting (a flag or a ``config.json`` value) that its field cannot take.

    The command lines print its message as one line and exit with code 2.

    Attributes:
        field: the name of the config field; None for a whole ``config.json``.
        problem: what is wrong with the value, ``"must be ..., got ..."``.
    """

    def __init__(self, message: str, field: str | None, problem: str) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem


def setting(
    default: Any,
    help: str,
    *flags: str,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    choices: Collection[str] | Callable[[], Collection[str]] | None = None,
    path_component: bool = False,
) -> Any:
    """A config field with its default, its ``-h`` text, its command-line flags and its limits.

    Every config checks its fields against their type (``bool``, ``int``, ``float`` or ``str``;
    floats must be finite) and these limits when it is made (:func:`check_settings`).

    Args:
        default: the field's default.
        help: the ``-h`` text.
        *flags: the command-line flags, e.g. ``"-n", "--nb-env"``.
        at_least: a number's smallest value.
        above: a number's bound from below, itself excluded.
        at_most: a number's largest value.
        choices: the values a string may take, or a function returning them (a registry that
            plug-ins fill after this module is imported).
        path_component: the string becomes part of a file name: no separators, no ``..``.
    """
    limits = {
        "at_least": at_least,
        "above": above,
        "at_most": at_most,
        "choices": choices,
        "path_component": path_component,
    }
    return field(default=default, metadata={"help": help, "flags": flags, "limits": limits})


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# The field types a setting may have: what a value must be, and the test of it.
_TYPES: dict[type, tuple[str, Callable[[Any], bool]]] = {
    bool: ("a boolean (true or false)", lambda value: isinstance(value, bool)),
    int: ("an integer", _is_integer),
    float: ("a finite number", _is_finite_number),
    str: ("a string", lambda value: isinstance(value, str)),
}
_TYPE_NAMES = {kind.__name__: kind for kind in _TYPES}


def field_kind(f: dataclasses.Field) -> type | None:
    """The type of a config field (``bool``, ``int``, ``float`` or ``str``), None if another."""
    return _TYPE_NAMES.get(f.type, f.type if f.type in _TYPES else None)


def shown_value(value: Any) -> str:
    """A value as a user wrote it: strings in JSON's double quotes, numbers and lists as such."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range(at_least: float | None, above: float | None, at_most: float | None) -> str:
    """``"at least 1"``, ``"positive"``, ``"in [0, 1]"``, ``"in (0, 1]"``, ``"at most 9"``."""
    low = at_least if above is None else above
    if at_most is not None and low is not None:
        return f"in {'[' if above is None else '('}{_number(low)}, {_number(at_most)}]"
    if at_most is not None:
        return f"at most {_number(at_most)}"
    if above is None:
        return f"at least {_number(at_least)}"
    return "positive" if above == 0 else f"greater than {_number(above)}"


def value_problem(
    value: Any,
    kind: type | None,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    choices: Collection[str] | Callable[[], Collection[str]] | None = None,
    path_component: bool = False,
) -> str | None:
    """What makes ``value`` unfit for a setting of type ``kind`` and these limits (:func:`setting`).

    Returns:
        None if it fits, else ``"must be ..., got ..."``: e.g. ``must be an integer, got "abc"``,
        ``must be a finite number, got nan``, ``must be in (0, 1], got 1e+38``.
    """
    got = f", got {shown_value(value)}"
    if kind in _TYPES and not _TYPES[kind][1](value):
        return f"must be {_TYPES[kind][0]}{got}"
    if choices is not None:
        names = choices() if callable(choices) else choices
        if value not in names:
            # A registry (name -> plug-in) also holds what a user's module registers.
            hint = f"; {UNKNOWN_NAME_HINT}" if isinstance(names, Mapping) else ""
            return f"must be one of {', '.join(names)}{got}{hint}"
    if path_component and (".." in value or any(c in value for c in "/\\\0")):
        return f"must be one path component (no /, \\ or ..){got}"
    if (
        (at_least is not None and value < at_least)
        or (above is not None and value <= above)
        or (at_most is not None and value > at_most)
    ):
        return f"must be {_range(at_least, above, at_most)}{got}"
    return None


def check_settings(config_class: type, settings: Mapping[str, Any]) -> None:
    """Checks each setting that names a field of ``config_class`` against its type and limits.

    Args:
        config_class: a dataclass whose fields were made with :func:`setting`.
        settings: field name -> value; names of other fields are ignored.

    Raises:
        ConfigError: the first setting that does not fit, e.g. ``--learning-rate
            (learning_rate) must be a finite number, got nan``.
    """
    for f in dataclasses.fields(config_class):
        if f.name not in settings:
            continue
        problem = value_problem(settings[f.name], field_kind(f), **f.metadata["limits"])
        if problem is not None:
            raise field_error(config_class, f.name, problem)


def field_error(config_class: type, name: str, problem: str) -> ConfigError:
    """The error of field ``name`` of ``config_class``: ``--flag (name) problem``."""
    return ConfigError(f"{long_flag(name, config_class)} ({name}) {problem}", name, problem)


def flags_of(name: str, config_class: type) -> tuple[str, ...]:
    """The command-line flags of the field ``name`` of ``config_class``."""
    return config_class.__dataclass_fields__[name].metadata["flags"]


def long_flag(name: str, config_class: type) -> str:
    """The main long flag of the field ``name`` of ``config_class``, e.g. ``--nb-env``."""
    return next(flag for flag in flags_of(name, config_class) if flag.startswith("--"))


def fields_in_order(
    name: str, sections: Sequence[type], order: Sequence[str], *, module: str
) -> type:
    """A frozen dataclass ``module.name`` that holds the fields of ``sections``, in ``order``.

    The base of a config made of sections whose fields its command line lists interleaved:
    dataclasses order a class's fields base after base, so a class inheriting the sections
    themselves could not keep the order of its flags in ``-h`` and of its checks.

    Raises:
        ValueError: ``order`` does not name each field of the sections exactly once.
    """
    fields = [f for section in sections for f in dataclasses.fields(section)]
    by_name = {f.name: f for f in fields}
    if len(by_name) != len(fields) or sorted(order) != sorted(by_name):
        missing, unknown = sorted(set(by_name) - set(order)), sorted(set(order) - set(by_name))
        raise ValueError(
            f"the fields of {name} must be those of its sections, each once: "
            f"missing {missing}, unknown {unknown}, {len(fields)} fields for {len(by_name)} names"
        )
    made = dataclasses.make_dataclass(
        name,
        [
            (n, by_name[n].type, field(default=by_name[n].default, metadata=by_name[n].metadata))
            for n in order
        ],
        frozen=True,
    )
    made.__module__ = module
    return made
