"""Atomic checkpoints of a training run: everything needed to continue it exactly.

A checkpoint is a directory ``checkpoints/step_{N}/`` (N = environment steps) of named
pieces, one file each:

* ``state.msgpack``: the ``TrainState`` (params with batch-norm statistics, optimizer state,
  PRNG key, update count), flax serialization;
* one ``{name}.msgpack`` per entry of ``TrainState.agent_state``: what an agent keeps besides
  its params (a replay buffer, target params), saved and checked like the state;
* ``meta.json``: counters, the mode, the run's config and what the retention policy ranks by;
* further pieces the run names (:func:`save_checkpoint`'s ``pieces``), such as
  ``carry.msgpack``, the recurrent state of the acting envs (local mode), and
  ``env_actions.npz``, the actions sent to the envs since their seeded reset, one ``[N, B]``
  integer array per action name, which :mod:`fnrl.parallel.resume` replays to bring fresh envs
  back to the exact state they had at the save.

``meta.json`` also holds the SHA-256 of every other file (``files``) and of its own other
fields (``meta_sha256``), which every load checks: a flipped byte anywhere, a counter included,
is a :class:`CheckpointError`, never a silently different run. Writes are atomic: the files go
to a temporary directory, are fsynced, and the directory is renamed into place (then the
parent is fsynced). A crash at any point of a save leaves every earlier checkpoint intact and
at most a hidden temporary directory behind, which :func:`remove_incomplete` clears. A
checkpoint that cannot be read or does not fit raises one :class:`CheckpointError` naming the
path and the problem.

A state holding a NaN or an infinity (a diverged run) is never written: saving it raises
:class:`NonFiniteState`, and so does every load of one found on disk (evaluate and render
refuse it); :func:`latest_good_checkpoint` skips it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from fnrl.types import Params, TrainState

STATE_FILE = "state.msgpack"
META_FILE = "meta.json"
META_CHECKSUM = "meta_sha256"  # of meta.json's other fields, as sorted-key JSON
CARRY = "carry"  # the piece of the acting envs' recurrent state
ENV_ACTIONS = "env_actions"  # the piece of the env action log

_ARRAY_PIECES = {ENV_ACTIONS: "env_actions.npz"}  # compressed arrays: an action log packs well
_RESERVED = frozenset({"state", "meta", CARRY, ENV_ACTIONS})  # no agent_state entry may use them
_PREFIX = "step_"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the network being loaded into."""


class NonFiniteState(CheckpointError):
    """A state to save, or a saved one, holds a NaN or an infinity: the run had diverged."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk...); the message names its path."""


def _nonfinite_entry(tree: Any) -> str | None:
    """The path of the first floating-point array of ``tree`` that is not all finite, or None."""
    for key_path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            return jax.tree_util.keystr(key_path)
    return None


def _check_finite(path: Path, what: str, tree: Any) -> None:
    """Refuses a checkpoint whose ``what`` (the tree read from or written to ``path``) diverged.

    Raises:
        NonFiniteState: naming the checkpoint and the first non-finite entry.
    """
    entry = _nonfinite_entry(tree)
    if entry is not None:
        raise NonFiniteState(
            f"checkpoint {path} holds non-finite values ({what}{entry} has a NaN or an "
            "infinity): the run had diverged there"
        )


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


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(a) for name, a in arrays.items()})
    return buffer.getvalue()


def piece_file(name: str) -> str:
    """The file name of the checkpoint piece ``name``: ``{name}.msgpack``, or the action log's
    ``env_actions.npz``."""
    return _ARRAY_PIECES.get(name, f"{name}.msgpack")


def _agent_pieces(state: TrainState) -> Mapping[str, Any]:
    """``state.agent_state``, its names checked against the pieces the run itself writes.

    Raises:
        ValueError: an entry named like one of them.
    """
    clash = _RESERVED.intersection(state.agent_state)
    if clash:
        raise ValueError(
            f"agent_state entry {sorted(clash)[0]!r} clashes with a checkpoint piece of the "
            f"run; rename it (reserved: {', '.join(sorted(_RESERVED))})"
        )
    return state.agent_state


def _state_bytes(state: TrainState) -> bytes:
    """The state piece: the ``TrainState`` without ``agent_state``, which has pieces of its own
    (so a state without agent state is stored exactly as before that field existed)."""
    state_dict = flax.serialization.to_state_dict(state)
    del state_dict["agent_state"]
    return flax.serialization.msgpack_serialize(state_dict, in_place=True)  # as to_bytes


def save_checkpoint(
    directory: str | os.PathLike,
    state: TrainState,
    meta: Mapping[str, Any],
    *,
    env_steps: int,
    pieces: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a checkpoint to ``directory/step_{env_steps}`` atomically.

    An existing checkpoint of the same step is replaced; until the new one is in place the old
    one stays (under a hidden name if the crash comes between the two renames).

    Args:
        directory: the run's ``checkpoints`` directory (created if missing, in a run
            directory that exists).
        state: the learner state to save (fetched from the devices); each entry of its
            ``agent_state`` becomes a piece of that name.
        meta: JSON-serializable counters and config saved beside the state.
        env_steps: environment steps consumed so far; names the checkpoint.
        pieces: more named pieces, each a pytree of arrays: ``CARRY`` (the ``[B, ...]``
            recurrent carry of the envs), ``ENV_ACTIONS`` (action name -> ``[N, B]`` integer
            actions, or ``[N, B, D]`` float ones for a continuous action, sent to the envs),
            or any other name (:func:`load_piece` reads them back).

    Returns:
        The path of the new checkpoint.

    Raises:
        NonFiniteState: ``state`` holds a NaN or an infinity; nothing is written.
        CheckpointWriteError: a file could not be written (naming the checkpoint and the OS
            error); the partial save is removed and every earlier checkpoint stays.
    """
    directory = Path(directory)
    final = directory / f"{_PREFIX}{env_steps}"
    state = jax.device_get(state)
    _check_finite(final, "state", state)
    files = {STATE_FILE: _state_bytes(state)}
    for name, piece in {**_agent_pieces(state), **(pieces or {})}.items():
        piece = jax.device_get(piece)
        files[piece_file(name)] = (
            _npz_bytes(piece) if name in _ARRAY_PIECES else flax.serialization.to_bytes(piece)
        )
    checksums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    meta = {**meta, "env_steps": env_steps, "files": checksums}
    files[META_FILE] = json.dumps({**meta, META_CHECKSUM: _meta_checksum(meta)}).encode()
    tmp = directory / f".{_PREFIX}{env_steps}.tmp{os.getpid()}"
    try:
        _write_atomically(directory, tmp, final, files)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)  # gives the space back
        reason = f"[Errno {e.errno}] {e.strerror}" if e.errno else str(e)
        if not directory.parent.is_dir():
            reason = f"its run directory {directory.parent} was removed"
        raise CheckpointWriteError(f"cannot write checkpoint {final}: {reason}") from e
    return final


def _write_atomically(directory: Path, tmp: Path, final: Path, files: dict[str, bytes]) -> None:
    """Writes ``files`` into ``tmp``, then renames it to ``final`` (see the module docstring)."""
    directory.mkdir(exist_ok=True)  # not its run directory: a removed one stays removed
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, data in files.items():
        _write_synced(tmp / name, data)
    _fsync_dir(tmp)
    old = None
    if final.exists():
        old = directory / f".{final.name}.old{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(directory)
    if old is not None:
        shutil.rmtree(old)


def _meta_checksum(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint, checked against its own checksum.

    Checkpoints written before ``meta.json`` had a checksum are read unchecked.

    Raises:
        CheckpointError: it is missing, is not a JSON object, or does not match its checksum.
    """
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: meta.json is not a JSON object")
    expected = meta.pop(META_CHECKSUM, None)
    if expected is not None and _meta_checksum(meta) != expected:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: meta.json does not match its checksum"
        )
    return meta


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # arrays and jax.ShapeDtypeStruct
        return tuple(x.shape), np.dtype(x.dtype)
    x = np.asarray(x)
    return x.shape, x.dtype


def _restore(path: Path, what: str, target: Any, state_dict: Any) -> Any:
    """``state_dict`` in the structure of ``target``, checked leaf by leaf."""
    try:
        restored = flax.serialization.from_state_dict(target, state_dict)
    except Exception as e:  # flax raises ValueError/KeyError/TypeError for mismatched trees
        raise CheckpointError(
            f"checkpoint {path} is corrupt or from another network ({what}): {e}"
        ) from e
    expected = jax.tree_util.tree_leaves_with_path(target)
    got_leaves = jax.tree.leaves(restored)
    if len(expected) != len(got_leaves):
        raise CheckpointError(
            f"checkpoint {path} does not fit this network: {what} has {len(got_leaves)} arrays "
            f"in the checkpoint but {len(expected)} here"
        )
    for (key_path, want), got in zip(expected, got_leaves, strict=True):
        (want_shape, want_dtype), (got_shape, got_dtype) = _shape_dtype(want), _shape_dtype(got)
        if want_shape != got_shape or want_dtype != got_dtype:
            raise CheckpointError(
                f"checkpoint {path} does not fit this network: "
                f"{what}{jax.tree_util.keystr(key_path)} is {got_dtype}{list(got_shape)} in the "
                f"checkpoint but {want_dtype}{list(want_shape)} here"
            )
    return restored


def _read_verified(path: Path, name: str) -> bytes:
    """The bytes of ``path / name``, checked against the SHA-256 its ``meta.json`` recorded.

    Checkpoints written before checksums existed are read unchecked.
    """
    try:
        data = (path / name).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    expected = read_meta(path).get("files", {}).get(name) if (path / META_FILE).exists() else None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its checksum")
    return data


def _read_msgpack(path: Path, name: str) -> Any:
    data = _read_verified(path, name)
    try:
        return flax.serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises many types for corrupt bytes
        raise CheckpointError(f"checkpoint {path} is corrupt ({name}): {e}") from e


def load_checkpoint(path: str | os.PathLike, target: TrainState) -> tuple[TrainState, dict]:
    """Reads a checkpoint's state, with its agent state's pieces, into the structure of ``target``.

    Args:
        path: a ``step_{N}`` checkpoint directory.
        target: a state with the expected structure, shapes and dtypes (a fresh init, or
            ``jax.eval_shape`` of one); each entry of its ``agent_state`` is read from the piece
            of that name.

    Returns:
        The restored state (numpy arrays) and the checkpoint's meta dict.

    Raises:
        CheckpointError: the checkpoint is missing or corrupt, lacks a piece of
            ``target.agent_state``, or its arrays do not match ``target`` (naming the first
            mismatching entry).
        NonFiniteState: it holds a NaN or an infinity.
    """
    path = Path(path)
    meta = read_meta(path)
    target = jax.device_get(target)
    state_dict = _read_msgpack(path, STATE_FILE)
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: {STATE_FILE} holds no state")
    state_dict = {**state_dict, "agent_state": {}}
    state = _restore(path, "state", target._replace(agent_state={}), state_dict)
    agent_state = {}
    for name, piece in target.agent_state.items():
        agent_state[name] = load_piece(path, name, piece)
        if agent_state[name] is None:
            raise CheckpointError(
                f"checkpoint {path} does not fit this agent: it has no {piece_file(name)}"
            )
    state = state._replace(agent_state=agent_state)
    _check_finite(path, "state", state)
    return state, meta


def load_params(path: str | os.PathLike, target: Params) -> Params:
    """Reads only the network variables of a checkpoint, whatever the optimizer was.

    Args:
        path: a ``step_{N}`` checkpoint directory.
        target: variables with the expected structure (``Agent.init`` or its ``eval_shape``).

    Returns:
        The params (with batch-norm statistics), numpy arrays.

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
        NonFiniteState: the params hold a NaN or an infinity.
    """
    path = Path(path)
    state_dict = _read_msgpack(path, STATE_FILE)
    if not isinstance(state_dict, dict) or "params" not in state_dict:
        raise CheckpointError(f"checkpoint {path} is corrupt: {STATE_FILE} holds no params")
    params = _restore(path, "params", jax.device_get(target), state_dict["params"])
    _check_finite(path, "params", params)
    return params


def load_piece(path: str | os.PathLike, name: str, target: Any = None) -> Any | None:
    """The saved piece ``name``, or None if the checkpoint has none (e.g. ``CARRY`` of a mode
    that saves no carry).

    Args:
        path: a ``step_{N}`` checkpoint directory.
        name: the piece's name.
        target: the structure, shapes and dtypes to restore into; the action log
            (``ENV_ACTIONS``) needs none: it comes back as action name -> ``[N, B]`` array.

    Raises:
        CheckpointError: it is corrupt or does not fit ``target`` (e.g. another ``--nb-env``).
    """
    path, file = Path(path), piece_file(name)
    if not (path / file).exists():
        return None
    if name not in _ARRAY_PIECES:
        return _restore(path, name, jax.device_get(target), _read_msgpack(path, file))
    try:
        with np.load(io.BytesIO(_read_verified(path, file)), allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except Exception as e:  # zipfile and numpy raise many types for corrupt files
        raise CheckpointError(f"checkpoint {path} is corrupt ({file}): {e}") from e


def step_of(path: Path) -> int | None:
    """The step a checkpoint directory's name ``step_{N}`` gives, None for another name."""
    suffix = path.name[len(_PREFIX) :]
    return int(suffix) if path.name.startswith(_PREFIX) and suffix.isdigit() else None


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The complete checkpoints in ``directory``, oldest (fewest steps) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the most steps in ``directory``, None if there is none."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def remove_incomplete(directory: str | os.PathLike) -> None:
    """Deletes what interrupted saves left behind (hidden temporary directories).

    A save interrupted between its two renames leaves the replaced checkpoint under a hidden
    ``.old`` name; it is put back if its step has no checkpoint.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        name = path.name
        if not (name.startswith(f".{_PREFIX}") and path.is_dir()):
            continue
        step, _, kind = name[1:].partition(".")
        if kind.startswith("old") and not (directory / step).exists():
            os.replace(path, directory / step)
        else:
            shutil.rmtree(path)


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Checks a checkpoint without loading it, and returns its meta.

    ``meta.json`` must be readable and hold integer ``env_steps`` (the step its name says) and
    ``updates``; every file it has a checksum for must be present and match it, and the state
    must be finite.

    Raises:
        CheckpointError: naming the first problem (a :class:`NonFiniteState` for a NaN or an
            infinity).
    """
    path = Path(path)
    meta = read_meta(path)
    for name in ("env_steps", "updates"):
        if not isinstance(meta.get(name), int):
            raise CheckpointError(f"checkpoint {path} is corrupt: meta.json has no {name}")
    if step_of(path) not in (None, meta["env_steps"]):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: meta.json says env_steps {meta['env_steps']}"
        )
    for name in meta.get("files", {}):
        if name != STATE_FILE:
            _read_verified(path, name)
    _check_finite(path, "state", _read_msgpack(path, STATE_FILE))
    return meta


def latest_good_checkpoint(
    directory: str | os.PathLike,
) -> tuple[Path | None, list[CheckpointError]]:
    """The newest checkpoint in ``directory`` that verifies, and why each newer one did not.

    A checkpoint verifies when it is intact and its state finite (:func:`verify_checkpoint`).

    Returns:
        ``(path, errors)``: ``path`` is None when no checkpoint verifies (or there is none).
    """
    errors = []
    for path in reversed(list_checkpoints(directory)):
        try:
            verify_checkpoint(path)
        except CheckpointError as e:
            errors.append(e)
            continue
        return path, errors
    return None, errors


def find_checkpoint(run_dir: str | os.PathLike, which: str | None = None) -> Path:
    """A checkpoint of a run, for the command lines.

    Args:
        run_dir: the run directory (holding ``checkpoints/``), or a checkpoint directory.
        which: None for the latest; a step count (``"2000"``), a name (``"step_2000"``) or a
            path.

    Raises:
        CheckpointError: no such checkpoint (naming the ones that exist).
    """
    run_dir = Path(run_dir)
    if which is None and (run_dir / STATE_FILE).exists():
        return run_dir
    directory = run_dir / "checkpoints"
    found = list_checkpoints(directory)
    if which is None:
        if not found:
            raise CheckpointError(f"no checkpoint in {directory}")
        return found[-1]
    for candidate in (Path(which), directory / which, directory / f"{_PREFIX}{which}"):
        if (candidate / META_FILE).exists() or (candidate / STATE_FILE).exists():
            return candidate
    names = ", ".join(p.name for p in found) or "none"
    raise CheckpointError(f"no checkpoint {which!r} in {directory} (found: {names})")
