"""Checkpoints: exact round trips, atomic writes, clear errors."""

import os

import jax
import numpy as np
import pytest

from fnrl import checkpoint
from fnrl.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from fnrl.types import TrainState


def _state(seed=0, width=3):
    rng = np.random.default_rng(seed)
    params = {
        "params": {"dense": {"kernel": rng.normal(size=(4, width)).astype(np.float32)}},
        "batch_stats": {"bn": {"mean": rng.normal(size=(width,)).astype(np.float32)}},
    }
    opt_state = (rng.normal(size=(4, width)).astype(np.float32), np.int32(seed))
    return TrainState(params, opt_state, jax.random.PRNGKey(seed), np.int32(7))


def _assert_equal_trees(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_round_trip_is_exact(tmp_path):
    state = _state(1)
    path = save_checkpoint(tmp_path, state, {"updates": 7}, env_steps=640)
    assert path.name == "step_640"
    restored, meta = load_checkpoint(path, _state(2))
    _assert_equal_trees(restored, state)
    assert meta == {"updates": 7, "env_steps": 640}


def test_failure_before_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    good = save_checkpoint(tmp_path, _state(1), {}, env_steps=10)

    def crash(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        save_checkpoint(tmp_path, _state(2), {}, env_steps=20)
    assert list_checkpoints(tmp_path) == [good]
    restored, _ = load_checkpoint(good, _state(3))
    _assert_equal_trees(restored, _state(1))


def test_truncated_file_gives_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, _state(1), {}, env_steps=10)
    state_file = path / "state.msgpack"
    os.truncate(state_file, state_file.stat().st_size // 2)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path, _state(1))


def test_other_network_gives_error_naming_the_entry(tmp_path):
    path = save_checkpoint(tmp_path, _state(1, width=3), {}, env_steps=10)
    mismatch = r"\['bn'\]\['mean'\] is float32\[3\] in the checkpoint but float32\[5\] here"
    with pytest.raises(CheckpointError, match=mismatch):
        load_checkpoint(path, _state(1, width=5))


def test_missing_checkpoint_gives_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "step_5", _state())


def test_prune_keeps_the_most_recent(tmp_path):
    for steps in (5, 100, 20, 7):
        save_checkpoint(tmp_path, _state(), {}, env_steps=steps)
    checkpoint.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_20", "step_100"]
