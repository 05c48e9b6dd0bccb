"""Command line: ``python -m fnrl.networks.adept_convert ADEPT_RUN_DIR OUT_RUN_DIR``.

Turns an adept run directory into an fnrl one, which ``fnrl.evaluate`` plays.
adept's ``local`` mode wrote ``args.json`` (its flags) and, every epoch, ``<step>/model_<step>.pth``
(the network's ``state_dict``) beside ``<step>/optimizer_<step>.pth`` (adept's
``SimpleModelSaver``). The conversion writes

* ``config.json``: adept's settings that fnrl shares (env id, seed, envs, rollout length,
  learning rate, ``normalize``, the network names with adept's ``ResNet50`` as fnrl's
  ``ResNet50V2``, ...) over fnrl's defaults for that env;
* ``checkpoints/step_<step>/`` per adept epoch: the network's weights, read strictly from adept's
  keys (:func:`fnrl.networks.torch_interop.from_adept_state_dict`), with the counters adept's
  step implies (``updates = step // (nb_env * exp_length)``).

The optimizer state is fnrl's fresh one: adept's ``optimizer_<step>.pth`` is not converted, so
resuming a converted run restarts RMSprop's running averages. Needs PyTorch (the ``torch``
extra) and the env (its spec sizes the network).

Impure: reads and writes files and makes one env.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROG = "python -m fnrl.networks.adept_convert"

# adept's args.json names of the three networks: the 2018 release, then its later ``net3d`` /
# ``net1d`` / ``netbody`` flags.
_NETWORK_ARGS = {
    "vision_network": (("network_vision", "net3d"), "vision"),
    "discrete_network": (("network_discrete", "net1d"), "discrete"),
    "network_body": (("network_body", "netbody"), "body"),
}
# Settings that describe where or how adept ran, not the trained network or its env.
_NOT_CONVERTED = {"log_dir", "resume", "profile", "debug", "tag"}
# What adept's networks were whatever the env: ``--normalize`` meant batch norm, and
# ``--zscore-norm-env`` was accepted but never normalized anything.
_ADEPT_NETWORK = {"normalization": "batch", "zscore_norm_env": False}


def _epochs(adept_dir: Path) -> list[tuple[int, Path]]:
    """``(step, model file)`` of every ``<step>/model_<step>.pth``, fewest steps first."""
    found = []
    for directory in adept_dir.iterdir():
        model = directory / f"model_{directory.name}.pth"
        if directory.is_dir() and directory.name.isdigit() and model.is_file():
            found.append((int(directory.name), model))
    return sorted(found)


def fnrl_settings(args: Mapping[str, Any]) -> dict[str, Any]:
    """fnrl's settings for adept's ``args.json`` ``args``: the fields fnrl shares, by name.

    Batch norm for ``normalize`` and no observation statistics, as adept's networks had.
    Network names go through :func:`fnrl.networks.torch_interop.fnrl_network_name`; integral
    floats (adept's ``-mts 10e6``) become ints for integer fields; settings fnrl does not have
    are left out.

    Raises:
        ValueError: a network adept had not (the message lists adept's names).
    """
    from fnrl.config import TrainConfig, agent_config_class, field_kind
    from fnrl.networks.torch_interop import fnrl_network_name

    settings: dict[str, Any] = dict(_ADEPT_NETWORK)
    for field, (names, kind) in _NETWORK_ARGS.items():
        name = next((args[n] for n in names if n in args), None)
        if name is not None:
            settings[field] = fnrl_network_name(name, kind)
    agent = args.get("agent", TrainConfig.agent)
    try:
        run_class = agent_config_class(TrainConfig, agent)
    except ValueError:  # an agent fnrl lacks: the network still evaluates under fnrl's default
        run_class = agent_config_class(TrainConfig, TrainConfig.agent)
    fields = {f.name: f for f in dataclasses.fields(run_class)}
    for name, value in args.items():
        if name not in fields or name in _NOT_CONVERTED or name in settings:
            continue
        if field_kind(fields[name]) is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        settings[name] = value
    if "agent" in settings and run_class.agent != settings["agent"]:
        del settings["agent"]
    return settings


def convert(
    adept_dir: str | Path,
    out_dir: str | Path,
    *,
    observation_names: Mapping[str, str] | None = None,
    action_names: Mapping[str, str] | None = None,
    **overrides: Any,
) -> list[Path]:
    """Converts the adept run ``adept_dir`` into the fnrl run ``out_dir``; see the module doc.

    Args:
        adept_dir: holds adept's ``args.json`` and ``<step>/model_<step>.pth`` files.
        out_dir: the fnrl run directory to write (must not hold a ``config.json`` yet).
        observation_names, action_names: see
            :func:`fnrl.networks.torch_interop.adept_layout`.
        **overrides: fnrl settings over the converted ones (e.g. ``env_id``).

    Returns:
        The checkpoints written, fewest steps first.

    Raises:
        ValueError: no ``args.json`` or model file, an unknown network, a config fnrl rejects,
            an existing run at ``out_dir``, or a model that does not fit (naming the key).
    """
    import jax
    import jax.numpy as jnp
    import torch

    from fnrl.checkpoint import save_checkpoint
    from fnrl.config import make_config
    from fnrl.logging import write_config
    from fnrl.networks.torch_interop import from_adept_state_dict
    from fnrl.parallel.build import (
        make_agent,
        make_network,
        make_training_env,
        make_training_optimizer,
    )
    from fnrl.types import TrainState

    adept_dir, out_dir = Path(adept_dir), Path(out_dir)
    try:
        args = json.loads((adept_dir / "args.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{adept_dir} is not an adept run: cannot read args.json: {e}") from e
    epochs = _epochs(adept_dir)
    if not epochs:
        raise ValueError(f"{adept_dir} holds no <step>/model_<step>.pth file")
    if (out_dir / "config.json").exists():
        raise ValueError(f"{out_dir} already holds a run (config.json); pick a new directory")
    config = make_config(**{**fnrl_settings(args), **overrides})
    env = make_training_env(config, 1, config.seed)
    try:
        spec, frames_per_step = env.spec, env.frames_per_step
    finally:
        env.close()
    network = make_network(config, spec)
    target = jax.eval_shape(make_agent(config, spec).init, jax.random.PRNGKey(0))
    optimizer = make_training_optimizer(config)
    states = []
    for step, model in epochs:
        state_dict = torch.load(model, map_location="cpu", weights_only=True)
        try:
            variables = from_adept_state_dict(
                state_dict, network, observation_names=observation_names, action_names=action_names
            )
        except ValueError as e:
            raise ValueError(f"{model}: {e}") from e
        if jax.tree.structure(variables) != jax.tree.structure(target):
            raise ValueError(f"{model} gives variables the agent does not have")
        updates = step // (config.nb_env * config.exp_length)
        state = TrainState(
            variables,
            optimizer.init(variables["params"]),
            jax.random.PRNGKey(config.seed),
            jnp.asarray(updates, jnp.int32),
        )
        meta = {
            "mode": "local",
            "env_steps": step,
            "updates": updates,
            "frames": step * frames_per_step,
            "mean_return": None,
            "recent_returns": [],
            "config": config.to_dict(),
            "converted_from": str(model),
        }
        states.append((step, state, meta))
    # Written only once every model has converted: a bad one leaves no half run behind.
    out_dir.mkdir(parents=True, exist_ok=True)
    write_config(out_dir, config.to_dict())
    return [
        save_checkpoint(out_dir / "checkpoints", state, meta, env_steps=step)
        for step, state, meta in states
    ]


def make_parser() -> argparse.ArgumentParser:
    """The ``adept_convert`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Turn an adept run directory into an fnrl one."
    )
    parser.add_argument("adept_dir", help="adept's run directory (args.json, <step>/model_*.pth)")
    parser.add_argument("out_dir", help="the fnrl run directory to write")
    parser.add_argument("--env-id", default=None, help="override adept's env id")
    parser.add_argument(
        "--observation-names",
        type=json.loads,
        default=None,
        help='JSON {fnrl observation key: adept name}, e.g. \'{"obs": "Discrete"}\'',
    )
    parser.add_argument(
        "--action-names", type=json.loads, default=None, help="JSON {fnrl action key: adept name}"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: converts, prints each checkpoint written."""
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {} if args.env_id is None else {"env_id": args.env_id}
    try:
        written = convert(
            args.adept_dir,
            args.out_dir,
            observation_names=args.observation_names,
            action_names=args.action_names,
            **overrides,
        )
    except (ValueError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}", flush=True)
    print(f"python -m fnrl.evaluate {args.out_dir} evaluates it", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
