"""Checkpoints: exact round trips, atomic writes under injected crashes, retention, clear errors."""

import dataclasses
import json
import os
import shutil

import flax.serialization
import jax
import numpy as np
import pytest

from fnrl import checkpoint
from fnrl.checkpoint import (
    CheckpointError,
    find_checkpoint,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_params,
    load_piece,
    read_meta,
    remove_incomplete,
    save_checkpoint,
    verify_checkpoint,
)
from fnrl.config import make_config
from fnrl.parallel.checkpointer import prune_checkpoints
from fnrl.parallel.local import train_local
from fnrl.parallel.resume import ResumeWarning
from fnrl.parallel.run import open_run
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
    assert meta == {
        "updates": 7,
        "env_steps": 640,
        "files": {"state.msgpack": meta["files"]["state.msgpack"]},
    }
    assert (
        load_piece(path, "carry", np.zeros(3)) is None and load_piece(path, "env_actions") is None
    )


def test_a_state_without_agent_state_is_stored_as_the_four_fields_it_always_had(tmp_path):
    state = jax.device_get(_state(1))  # as save_checkpoint fetches it
    path = save_checkpoint(tmp_path, state, {}, env_steps=10)
    fields = {
        "params": state.params,
        "opt_state": state.opt_state,
        "key": state.key,
        "step": state.step,
    }
    # What flax.serialization.to_bytes wrote for a TrainState of these four fields.
    assert (path / "state.msgpack").read_bytes() == flax.serialization.to_bytes(fields)
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "state.msgpack"]


def test_each_agent_state_entry_is_a_piece_that_round_trips_exactly(tmp_path):
    replay = {"items": np.arange(12, dtype=np.uint8).reshape(4, 3), "size": np.int32(3)}
    target = {"online": np.float32(2.5)}
    state = _state(1)._replace(agent_state={"replay": replay, "target": target})
    path = save_checkpoint(tmp_path, state, {}, env_steps=10)
    assert {"replay.msgpack", "target.msgpack"} <= set(read_meta(path)["files"])
    template = _state(2)._replace(agent_state=jax.tree.map(np.zeros_like, state.agent_state))
    restored, _ = load_checkpoint(path, template)
    _assert_equal_trees(restored, state)
    assert restored.agent_state["replay"]["items"].dtype == np.uint8
    with pytest.raises(CheckpointError, match="has no replay.msgpack"):
        (path / "replay.msgpack").unlink()
        load_checkpoint(path, template)


def test_an_agent_state_entry_may_not_take_a_piece_name_of_the_run(tmp_path):
    state = _state(1)._replace(agent_state={"carry": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="agent_state entry 'carry' clashes"):
        save_checkpoint(tmp_path, state, {}, env_steps=10)


def test_carry_and_env_actions_round_trip_exactly(tmp_path):
    carry = (np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), -1.5, np.float32))
    actions = {"action": np.array([[0, 5], [255, 3], [7, 7]], np.uint8)}
    path = save_checkpoint(
        tmp_path, _state(), {}, env_steps=6, pieces={"carry": carry, "env_actions": actions}
    )
    _assert_equal_trees(load_piece(path, "carry", jax.tree.map(np.zeros_like, carry)), carry)
    restored = load_piece(path, "env_actions")
    assert restored.keys() == {"action"} and restored["action"].dtype == np.uint8
    np.testing.assert_array_equal(restored["action"], actions["action"])
    with pytest.raises(CheckpointError, match=r"carry\[0\] is float32\[2, 3\] in the checkpoint"):
        load_piece(path, "carry", (np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)))


def test_load_params_needs_no_optimizer_state(tmp_path):
    state = _state(3)
    path = save_checkpoint(tmp_path, state, {}, env_steps=1)
    target = jax.eval_shape(lambda: jax.tree.map(np.zeros_like, state.params))
    _assert_equal_trees(load_params(path, target), state.params)


class _Crash(Exception):
    pass


def _crash_at(monkeypatch, operation):
    """Makes the ``operation``-th file-system step of a save raise (counted from 0).

    Returns a list that receives the name of every step reached (to count them).
    """
    reached = []

    def wrap(name, function):
        def step(*args, **kwargs):
            if len(reached) == operation:
                raise _Crash(name)
            reached.append(name)
            return function(*args, **kwargs)

        return step

    monkeypatch.setattr(checkpoint, "_write_synced", wrap("write", checkpoint._write_synced))
    monkeypatch.setattr(checkpoint, "_fsync_dir", wrap("fsync_dir", checkpoint._fsync_dir))
    monkeypatch.setattr(checkpoint.os, "replace", wrap("rename", os.replace))
    monkeypatch.setattr(checkpoint.shutil, "rmtree", wrap("rmtree", shutil.rmtree))
    return reached


def _save(directory, seed, steps):
    carry = np.full((2, 3), seed, np.float32)
    actions = {"action": np.full((seed + 1, 2), seed, np.uint8)}
    return save_checkpoint(
        directory,
        _state(seed),
        {"seed": seed},
        env_steps=steps,
        pieces={"carry": carry, "env_actions": actions},
    )


def _assert_checkpoint_is(path, seed):
    restored, meta = load_checkpoint(path, _state(99))
    _assert_equal_trees(restored, _state(seed))
    assert meta["seed"] == seed
    np.testing.assert_array_equal(load_piece(path, "carry", np.zeros((2, 3), np.float32)), seed)
    assert load_piece(path, "env_actions")["action"].shape == (seed + 1, 2)


@pytest.mark.parametrize("replace_same_step", [False, True])
def test_a_save_crashing_at_any_point_leaves_a_loadable_run(
    tmp_path, monkeypatch, replace_same_step
):
    # Count the file-system steps of one save, then crash at each of them in turn.
    with monkeypatch.context() as patch:
        probe = tmp_path / "probe"
        _save(probe, 1, 10)
        if replace_same_step:
            _save(probe, 2, 20)
        reached = _crash_at(patch, operation=10**9)
        _save(probe, 3, 20)
        operations = len(reached)
    assert operations >= 6  # 4 files, directory fsyncs, rename(s)
    for operation in range(operations):
        directory = tmp_path / f"crash{operation}"
        _save(directory, 1, 10)
        if replace_same_step:
            _save(directory, 2, 20)
        with monkeypatch.context() as patch:
            _crash_at(patch, operation)
            with pytest.raises(_Crash):
                _save(directory, 3, 20)
        remove_incomplete(directory)
        found = {p.name: p for p in list_checkpoints(directory)}
        assert not [p for p in directory.iterdir() if p.name.startswith(".")], operation
        _assert_checkpoint_is(found["step_10"], 1)
        assert "step_20" in found or not replace_same_step, operation
        if "step_20" in found:  # either the old or the new checkpoint, complete
            new = json.loads((found["step_20"] / "meta.json").read_text())["seed"] == 3
            _assert_checkpoint_is(found["step_20"], 3 if new else 2)


def test_a_failed_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
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
    with pytest.raises(CheckpointError, match=r"step_10 is corrupt: state.msgpack does not match"):
        load_checkpoint(path, _state(1))


def test_corrupt_meta_and_action_log_give_clear_errors(tmp_path):
    path = _save(tmp_path, 1, 10)
    (path / "env_actions.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match=r"step_10 is corrupt: env_actions.npz does not"):
        load_piece(path, "env_actions")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "updates": 2}))  # one digit changed
    with pytest.raises(CheckpointError, match=r"step_10 is corrupt: meta.json does not match"):
        verify_checkpoint(path)
    assert latest_good_checkpoint(tmp_path)[0] is None
    del meta["meta_sha256"]  # as written before meta.json had a checksum
    (path / "meta.json").write_text(json.dumps({**meta, "env_steps": 99, "updates": 1}))
    with pytest.raises(CheckpointError, match=r"step_10 is corrupt: meta.json says env_steps 99"):
        verify_checkpoint(path)
    (path / "meta.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*step_10"):
        load_checkpoint(path, _state(1))


def test_other_network_gives_error_naming_the_entry(tmp_path):
    path = save_checkpoint(tmp_path, _state(1, width=3), {}, env_steps=10)
    mismatch = r"\['bn'\]\['mean'\] is float32\[3\] in the checkpoint but float32\[5\] here"
    with pytest.raises(CheckpointError, match=mismatch):
        load_checkpoint(path, _state(1, width=5))
    other = {"params": {"conv": {"kernel": np.zeros((3, 3), np.float32)}}}
    with pytest.raises(CheckpointError, match="step_10 is corrupt or from another network"):
        load_params(path, other)


def test_missing_checkpoint_gives_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "step_5", _state())


def test_prune_keeps_the_last_and_the_best(tmp_path):
    returns = {5: 10.0, 7: 90.0, 20: None, 50: 80.0, 60: 20.0, 100: 30.0, 200: 5.0}
    for steps, mean_return in returns.items():
        save_checkpoint(tmp_path, _state(), {"mean_return": mean_return}, env_steps=steps)
    (tmp_path / "step_x").mkdir()  # not a checkpoint: ignored
    removed = prune_checkpoints(tmp_path, keep_last=2, keep_best=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_7",
        "step_50",
        "step_100",
        "step_200",
    ]
    assert sorted(p.name for p in removed) == ["step_20", "step_5", "step_60"]
    prune_checkpoints(tmp_path, keep_last=1, keep_best=0)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_200"]


def test_remove_incomplete_puts_back_a_replaced_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path, _state(1), {}, env_steps=10)
    os.replace(path, tmp_path / ".step_10.old123")  # crash between the two renames
    (tmp_path / ".step_20.tmp123").mkdir()
    remove_incomplete(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_10"]
    _assert_equal_trees(load_checkpoint(tmp_path / "step_10", _state())[0], _state(1))


def test_find_checkpoint_by_step_name_or_latest(tmp_path):
    for steps in (10, 200):
        save_checkpoint(tmp_path / "checkpoints", _state(), {}, env_steps=steps)
    assert find_checkpoint(tmp_path).name == "step_200"
    assert find_checkpoint(tmp_path, "10").name == "step_10"
    assert find_checkpoint(tmp_path, "step_200").name == "step_200"
    assert find_checkpoint(tmp_path / "checkpoints" / "step_10").name == "step_10"
    with pytest.raises(CheckpointError, match=r"no checkpoint '30' .*found: step_10, step_200"):
        find_checkpoint(tmp_path, "30")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        find_checkpoint(tmp_path / "empty")


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["state.msgpack", "carry.msgpack", "env_actions.npz"])
def test_a_flipped_byte_in_any_file_is_found_by_its_checksum(tmp_path, name):
    carry = np.arange(6, dtype=np.float32).reshape(2, 3)
    actions = {"action": np.arange(40, dtype=np.int32).reshape(20, 2)}
    path = save_checkpoint(
        tmp_path, _state(1), {}, env_steps=6, pieces={"carry": carry, "env_actions": actions}
    )
    _flip_a_byte(path / name)
    loads = {
        "state.msgpack": [
            lambda: load_checkpoint(path, _state(1)),
            lambda: load_params(path, _state(1).params),
        ],
        "carry.msgpack": [lambda: load_piece(path, "carry", carry)],
        "env_actions.npz": [lambda: load_piece(path, "env_actions")],
    }
    for load in loads[name]:
        with pytest.raises(
            CheckpointError, match=f"step_6 is corrupt: {name} does not match its checksum"
        ):
            load()


def test_checkpoints_without_checksums_still_load(tmp_path):
    path = save_checkpoint(tmp_path, _state(1), {"updates": 7}, env_steps=10)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"], meta["meta_sha256"]  # written before checksums existed
    (path / "meta.json").write_text(json.dumps(meta))
    restored, _ = load_checkpoint(path, _state(2))
    _assert_equal_trees(restored, _state(1))


def test_pruning_hides_a_checkpoint_before_deleting_it(tmp_path, monkeypatch):
    for steps in (10, 20):
        save_checkpoint(tmp_path, _state(), {}, env_steps=steps)

    def crash(path):
        raise KeyboardInterrupt  # killed while deleting

    monkeypatch.setattr(checkpoint.shutil, "rmtree", crash)
    with pytest.raises(KeyboardInterrupt):
        prune_checkpoints(tmp_path, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_20"]
    monkeypatch.undo()
    remove_incomplete(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_20"]


def test_latest_good_checkpoint_skips_corrupt_ones_and_says_why(tmp_path):
    for steps in (10, 20, 30):
        save_checkpoint(tmp_path, _state(), {"updates": steps // 10}, env_steps=steps)
    _flip_a_byte(tmp_path / "step_30" / "state.msgpack")
    (tmp_path / "step_20" / "meta.json").write_text("{}")
    path, errors = latest_good_checkpoint(tmp_path)
    assert path.name == "step_10"
    assert [str(e) for e in errors] == [
        f"checkpoint {tmp_path / 'step_30'} is corrupt: state.msgpack does not match its checksum",
        f"checkpoint {tmp_path / 'step_20'} is corrupt: meta.json has no env_steps",
    ]
    _flip_a_byte(tmp_path / "step_10" / "state.msgpack")
    assert latest_good_checkpoint(tmp_path)[0] is None


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    settings = dict(nb_env=2, exp_length=5, epoch_len=20, nb_eval_env=0, log_dir=str(tmp_path))
    first = train_local(make_config(max_train_steps=40, **settings), show_progress=False)
    checkpoints = list_checkpoints(first.run_dir / "checkpoints")
    assert [p.name for p in checkpoints] == ["step_20", "step_40"]
    _flip_a_byte(checkpoints[-1] / "state.msgpack")
    with pytest.warns(ResumeWarning, match="step_40 is corrupt: state.msgpack does not match"):
        resumed = train_local(
            make_config(max_train_steps=60, resume=str(first.run_dir), **settings),
            show_progress=False,
        )
    assert (resumed.env_steps, resumed.updates) == (60, 6)
    log = (first.run_dir / "train_log.txt").read_text()
    assert "resuming from the older step_20" in log and "RESUME: from" in log


@pytest.mark.parametrize("edit", [{"mode": "impala"}, {"env_steps": 400, "updates": 40}])
def test_cli_resume_falls_back_past_a_meta_json_edited_by_hand(tmp_path, capsys, edit):
    """Its checksum no longer matches: ``fnrl.train --resume`` once refused the run in one line
    (exit 2) reading that meta for the run's mode, before the fallback could run."""
    from fnrl.train import main

    flags = ["-n", "2", "--exp-length", "5", "--epoch-len", "20", "--nb-eval-env", "0"]
    assert main([*flags, "-mts", "40", "--log-dir", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.glob("*/*")
    meta_file = run_dir / "checkpoints" / "step_40" / "meta.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), **edit}))
    capsys.readouterr()
    with pytest.warns(ResumeWarning, match="step_40 is corrupt: meta.json does not match"):
        assert main(["--resume", str(run_dir), "-mts", "60"]) == 0
    assert "finished: 60 steps" in capsys.readouterr().out


def test_a_live_run_directory_refuses_a_second_writer(tmp_path):
    config = make_config(nb_env=2, nb_eval_env=0, log_dir=str(tmp_path))
    live = open_run(config, "local", frames_per_step=1, show_progress=False)
    try:
        live.save(_state())
        in_flight = live.run_dir / "checkpoints" / ".step_99.tmp123"  # a save being written
        in_flight.mkdir()
        resume = dataclasses.replace(config, resume=str(live.run_dir))
        with pytest.raises(
            ValueError, match=rf"is in use by another training process \(pid {os.getpid()}\)"
        ):
            open_run(resume, "local", frames_per_step=1, show_progress=False)
        assert in_flight.is_dir()  # the refused resume cleaned nothing up
    finally:
        live.close()
    open_run(resume, "local", frames_per_step=1, show_progress=False).close()  # free again
