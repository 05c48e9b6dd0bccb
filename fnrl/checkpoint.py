"""Atomic checkpoints of a TrainState with its counters and config.

A checkpoint is a directory ``checkpoints/step_{N}/`` (N = environment steps) holding
``state.msgpack`` (flax serialization of params, optimizer state, RNG key, update count) and
``meta.json`` (counters and the run's config). It is written under a temporary name, fsynced,
and renamed into place, so a crash mid-save never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from fnrl.types import TrainState

_STATE_FILE = "state.msgpack"
_META_FILE = "meta.json"
_PREFIX = "step_"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the network being loaded into."""


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: str | os.PathLike, state: TrainState, meta: dict[str, Any], *, env_steps: int
) -> Path:
    """Writes ``state`` and ``meta`` to ``directory/step_{env_steps}`` atomically.

    Args:
        directory: the run's ``checkpoints`` directory (created if missing).
        state: the learner state to save (fetched from the devices).
        meta: JSON-serializable counters and config saved beside the state.
        env_steps: environment steps consumed so far; names the checkpoint.

    Returns:
        The path of the new checkpoint.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{_PREFIX}{env_steps}"
    tmp = directory / f".{_PREFIX}{env_steps}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _write_synced(tmp / _STATE_FILE, flax.serialization.to_bytes(jax.device_get(state)))
    _write_synced(tmp / _META_FILE, json.dumps({**meta, "env_steps": env_steps}).encode())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final


def load_checkpoint(path: str | os.PathLike, target: TrainState) -> tuple[TrainState, dict]:
    """Reads a checkpoint into the structure of ``target``.

    Args:
        path: a ``step_{N}`` checkpoint directory.
        target: a state with the expected structure, shapes and dtypes (e.g. a fresh init).

    Returns:
        The restored state (numpy arrays) and the checkpoint's meta dict.

    Raises:
        CheckpointError: the checkpoint is missing or corrupt, or its arrays do not match
            ``target`` (naming the first mismatching entry).
    """
    path = Path(path)
    try:
        data = (path / _STATE_FILE).read_bytes()
        meta = json.loads((path / _META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    target = jax.device_get(target)
    try:
        state = flax.serialization.from_bytes(target, data)
    except Exception as e:  # msgpack and flax raise many types for corrupt bytes
        raise CheckpointError(f"checkpoint {path} is corrupt or from another network: {e}") from e
    expected = jax.tree_util.tree_leaves_with_path(target)
    restored = jax.tree.leaves(state)
    for (key_path, want), got in zip(expected, restored, strict=True):
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape or want.dtype != got.dtype:
            raise CheckpointError(
                f"checkpoint {path} does not fit this network: "
                f"{jax.tree_util.keystr(key_path)} is {got.dtype}{list(got.shape)} in the "
                f"checkpoint but {want.dtype}{list(want.shape)} here"
            )
    return state, meta


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The complete checkpoints in ``directory``, oldest (fewest steps) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Deletes all but the ``keep`` most recent checkpoints in ``directory``."""
    for path in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(path)
