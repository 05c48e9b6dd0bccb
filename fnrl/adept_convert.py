"""Command line: ``python -m fnrl.adept_convert ADEPT_RUN_DIR OUT_RUN_DIR``, and
``python -m fnrl.adept_convert --to-adept FNRL_RUN_DIR OUT_ADEPT_DIR`` back.

Turns an adept run directory into an fnrl one, which ``fnrl.evaluate`` plays, and an fnrl run
into adept's layout (:func:`to_adept`), which adept's ``evaluate`` and ``render`` scripts read.
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
import contextlib
import dataclasses
import io
import json
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fnrl.checkpoint import list_checkpoints, load_params, read_meta, save_checkpoint
from fnrl.cli import CommandLineParser, load_run_config
from fnrl.config import (
    NetworkSettings,
    OptimizerSettings,
    TrainConfig,
    agent_config_class,
    make_config,
)
from fnrl.networks.torch_interop import (
    adept_network_name,
    fnrl_network_name,
    from_adept_state_dict,
    to_adept_state_dict,
)
from fnrl.settings import field_kind
from fnrl.types import TrainState

PROG = "python -m fnrl.adept_convert"
COMMAND = "fnrl.adept_convert"  # its errors' prefix, as the other commands'

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
# adept's args.json names of fnrl's settings where they differ.
_ADEPT_NAMES = {"entropy_coef": "entropy_weight"}
# The fnrl settings adept's local mode had under the same name (its 2018 flags).
_ADEPT_SHARED = (
    "agent", "debug", "discount", "env_id", "epoch_len", "exp_length",
    "generalized_advantage_estimation", "gpu_id", "learning_rate", "log_dir",
    "max_episode_length", "max_train_steps", "nb_env", "nb_eval_env", "nb_top_model",
    "normalize", "normalize_advantage", "profile", "seed", "skip_rate", "summary_frequency",
    "tag", "tau",
)  # fmt: skip


_TORCH_HINT = "adept's files are PyTorch's, which is not installed: pip install 'fnrl[torch]'"


def _import_torch() -> Any:
    """PyTorch, which reads and writes adept's files.

    Raises:
        ImportError: it is not installed (the message names the extra that installs it).
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError(_TORCH_HINT) from e
    return torch


def _read_model(torch: Any, model: Path) -> Mapping[str, Any]:
    """The ``state_dict`` adept saved in ``model``, read as tensors only (no code runs).

    Raises:
        ValueError: the file cannot be read or holds no ``state_dict``, in one line.
    """
    if model.stat().st_size == 0:
        raise ValueError(f"cannot read {model}: the file is empty")
    try:
        with warnings.catch_warnings():  # a file of another pickle protocol warns, then fails
            warnings.simplefilter("ignore", UserWarning)
            state_dict = torch.load(model, map_location="cpu", weights_only=True)
    except OSError as e:
        raise ValueError(f"cannot read {model}: [Errno {e.errno}] {e.strerror}") from e
    except Exception as e:  # torch.load raises many types (pickle, zip, EOF...) for bad bytes
        raise ValueError(
            f"cannot read {model}: not a file of tensors torch.save wrote ({type(e).__name__})"
        ) from e
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{model} holds a {type(state_dict).__name__}, not adept's state_dict")
    return state_dict


@contextlib.contextmanager
def _whole_or_nothing(out_dir: Path) -> Iterator[None]:
    """Runs a body that writes into ``out_dir``; if it fails (a full disk), removes what it
    added, ``out_dir`` too if it made it, so that no half conversion blocks a second try."""
    before = set(out_dir.iterdir()) if out_dir.is_dir() else None
    try:
        yield
    except BaseException:
        added = [out_dir] if before is None else set(out_dir.iterdir()) - before
        for path in added:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path``; an ``OSError`` names the file and the OS error."""
    try:
        path.write_bytes(data)
    except OSError as e:
        raise OSError(f"cannot write {path}: [Errno {e.errno}] {e.strerror}") from e


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
        ValueError: a network adept had not (the message lists adept's names), or a network or
            agent name that is no string.
    """
    for name in ("agent", *(n for names, _ in _NETWORK_ARGS.values() for n in names)):
        if name in args and not isinstance(args[name], str):
            raise ValueError(f"{name} must be a string, got {args[name]!r}")
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
    renamed = {adept: fnrl for fnrl, adept in _ADEPT_NAMES.items()}
    for name, value in args.items():
        name = renamed.get(name, name)
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
        The checkpoints written, fewest steps first; written whole or not at all (a write that
        fails removes what was written).

    Raises:
        ImportError: PyTorch is not installed.
        ValueError: no ``args.json`` or model file, an unknown network, a config fnrl rejects,
            an existing run at ``out_dir``, or a model that cannot be read or does not fit
            (naming the file and the key).
        OSError: a file could not be written (naming it and the OS error).
    """
    # Imported when converting, so that -h stays fast: PyTorch, the run shell and its logs.
    torch = _import_torch()
    import jax
    import jax.numpy as jnp

    from fnrl.logging import write_config
    from fnrl.parallel.build import (
        make_agent,
        make_network,
        make_training_env,
        make_training_optimizer,
    )

    adept_dir, out_dir = Path(adept_dir), Path(out_dir)
    try:
        args = json.loads((adept_dir / "args.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{adept_dir} is not an adept run: cannot read args.json: {e}") from e
    if not isinstance(args, dict):
        raise ValueError(
            f"{adept_dir / 'args.json'} is not adept's flags: it holds a "
            f"{type(args).__name__}, not an object"
        )
    epochs = _epochs(adept_dir)
    if not epochs:
        raise ValueError(f"{adept_dir} holds no <step>/model_<step>.pth file")
    if (out_dir / "config.json").exists():
        raise ValueError(f"{out_dir} already holds a run (config.json); pick a new directory")
    try:
        settings = fnrl_settings(args)
    except ValueError as e:
        raise ValueError(f"{adept_dir / 'args.json'}: {e}") from e
    config = make_config(**{**settings, **overrides})
    env = make_training_env(config, 1, config.seed)
    try:
        spec, frames_per_step = env.spec, env.frames_per_step
    finally:
        env.close()
    network = make_network(config.section(NetworkSettings), spec)
    target = jax.eval_shape(make_agent(config, spec).init, jax.random.PRNGKey(0))
    optimizer = make_training_optimizer(config.section(OptimizerSettings))
    states = []
    for step, model in epochs:
        state_dict = _read_model(torch, model)
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
    with _whole_or_nothing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_config(out_dir, config.to_dict())
        return [
            save_checkpoint(out_dir / "checkpoints", state, meta, env_steps=step)
            for step, state, meta in states
        ]


def adept_args(config: Any) -> dict[str, Any]:
    """adept's ``args.json`` for an fnrl run's config: the settings adept shared, by its names.

    Raises:
        ValueError: a network adept had not, or settings its networks could not have (layer
            norm, running observation statistics); the message names them.
    """
    differs = {k: getattr(config, k) for k, v in _ADEPT_NETWORK.items() if getattr(config, k) != v}
    if not config.normalize:  # without --normalize the kind of norm does not matter
        differs.pop("normalization", None)
    if differs:
        shown = ", ".join(f"{k}={v!r}" for k, v in differs.items())
        raise ValueError(f"adept's networks had batch norm and no observation statistics: {shown}")
    args = {name: getattr(config, name) for name in _ADEPT_SHARED}
    args.update({adept: getattr(config, fnrl) for fnrl, adept in _ADEPT_NAMES.items()})
    for field, (names, kind) in _NETWORK_ARGS.items():
        args[names[0]] = adept_network_name(getattr(config, field), kind)
    return args


def to_adept(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Writes the fnrl run ``run_dir`` in adept's layout at ``out_dir``.

    ``args.json`` (:func:`adept_args`, sorted, indent 4, as adept wrote it) and, per checkpoint,
    ``<step>/model_<step>.pth``: the network's weights under adept's keys
    (:func:`fnrl.networks.torch_interop.to_adept_state_dict`), which adept's
    ``ModularNetwork`` loads strictly. No ``optimizer_<step>.pth`` is written: adept's torch
    RMSprop state is keyed by its parameters' order, which fnrl does not know.

    Written whole or not at all: a write that fails removes what was written.

    Returns:
        The model files written, fewest steps first.

    Raises:
        ImportError: PyTorch is not installed.
        ValueError: no run or checkpoint, settings adept's networks could not have, an
            existing adept run at ``out_dir``.
        OSError: a file could not be written (naming it and the OS error).
    """
    # Imported when converting, so that -h stays fast: PyTorch and the run shell.
    torch = _import_torch()
    import jax

    from fnrl.parallel.build import make_agent, make_network, make_training_env

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = load_run_config(run_dir)
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    if not checkpoints:
        raise ValueError(f"{run_dir} holds no checkpoint")
    if (out_dir / "args.json").exists():
        raise ValueError(f"{out_dir} already holds an adept run (args.json); pick a new one")
    args = adept_args(config)
    env = make_training_env(config, 1, config.seed)
    try:
        spec = env.spec
    finally:
        env.close()
    network = make_network(config.section(NetworkSettings), spec)
    target = jax.eval_shape(make_agent(config, spec).init, jax.random.PRNGKey(0))
    models = []
    for path in checkpoints:
        variables = load_params(path, target)
        models.append((int(read_meta(path)["env_steps"]), to_adept_state_dict(variables, network)))
    written = []
    with _whole_or_nothing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        _write(out_dir / "args.json", json.dumps(args, sort_keys=True, indent=4).encode())
        for step, state_dict in models:
            (out_dir / str(step)).mkdir(exist_ok=True)
            written.append(out_dir / str(step) / f"model_{step}.pth")
            # Saved to memory, then written: torch.save onto a full disk raises a RuntimeError
            # of its zip writer that does not say why.
            data = io.BytesIO()
            torch.save(state_dict, data)
            _write(written[-1], data.getvalue())
    return written


def _names(text: str) -> dict[str, str]:
    """``--observation-names`` / ``--action-names``: a JSON object of strings."""
    try:
        names = json.loads(text)
    except ValueError:
        names = None
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object of names, {{"fnrl key": "adept name"}}, got {text!r}'
        )
    return names


def make_parser() -> argparse.ArgumentParser:
    """The ``adept_convert`` argument parser."""
    parser = CommandLineParser(
        prog=PROG, description="Turn an adept run directory into an fnrl one, or back."
    )
    parser.add_argument(
        "adept_dir",
        help="adept's run directory (args.json, <step>/model_*.pth); with --to-adept, the fnrl run",
    )
    parser.add_argument("out_dir", help="the fnrl run directory to write; with --to-adept, adept's")
    parser.add_argument(
        "--to-adept",
        action="store_true",
        help="write the fnrl run ADEPT_DIR in adept's layout at OUT_DIR (args.json and "
        "<step>/model_<step>.pth, no optimizer files)",
    )
    parser.add_argument("--env-id", default=None, help="override adept's env id")
    parser.add_argument(
        "--observation-names",
        type=_names,
        default=None,
        help='JSON {fnrl observation key: adept name}, e.g. \'{"obs": "Discrete"}\'',
    )
    parser.add_argument(
        "--action-names", type=_names, default=None, help="JSON {fnrl action key: adept name}"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: converts, prints each checkpoint written."""
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {} if args.env_id is None else {"env_id": args.env_id}
    if args.to_adept:
        try:
            for path in to_adept(args.adept_dir, args.out_dir):
                print(f"wrote {path}", flush=True)
        except (ValueError, OSError, ImportError) as e:
            print(f"{COMMAND}: error: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        written = convert(
            args.adept_dir,
            args.out_dir,
            observation_names=args.observation_names,
            action_names=args.action_names,
            **overrides,
        )
    except (ValueError, OSError, ImportError) as e:
        print(f"{COMMAND}: error: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}", flush=True)
    print(f"python -m fnrl.evaluate {args.out_dir} evaluates it", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
