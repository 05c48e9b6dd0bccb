"""Weights & Biases: a run with --wandb-project, or started inside a W&B run, logs to W&B what
it writes to tensorboard. Offline only (WANDB_MODE=offline): W&B's local files are read back.

The tests that need wandb skip without it (the wandb extra); the one that checks the error of
its absence runs everywhere.
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl.logging import wandb_run_id
from fnrl.train import parse_args

TINY = ["-mts", "40", "-n", "2", "--exp-length", "5", "--log-interval", "1"]
EVALUATED = ["--eval-every", "20", "--eval-episodes", "2"]

# The columns W&B adds to each history row itself.
_WANDB_COLUMNS = {"_step", "_runtime", "_timestamp", "env_step"}


def _offline_env(tmp_path):
    """The environment of a subprocess that may use W&B: offline, its settings under tmp."""
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_SILENT": "true",
    }


def _train(args, env, timeout=300):
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _records(path):
    """The records of a W&B run file (``run-{id}.wandb``), in the order they were written.

    The file is W&B's transaction log: a 7-byte header (``:W&B``, a magic, a version), then
    LevelDB's log format, records cut into 32 KiB blocks (7-byte chunk headers: CRC, length,
    type full/first/middle/last), each record a ``wandb_internal.Record`` protobuf. wandb keeps
    no Python reader of it since its Go core writes it.
    """
    from wandb.proto.wandb_internal_pb2 import Record

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", path
    block, position, chunks = 32768, 7, []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header: padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record
        elif kind == 0:  # zeros past the end of what was written
            chunks = []


def _item_key(item):
    return item.key or "/".join(item.nested_key)


class WandbRun:
    """What a W&B run file holds: the run's id and name, its config, its history rows."""

    def __init__(self, path):
        self.config, self.rows = {}, []
        for record in _records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                self.id, self.name = record.run.run_id, record.run.display_name
                updates = record.run.config.update
            elif kind == "config":
                updates = record.config.update
            elif kind == "history":
                self.rows.append(
                    {_item_key(i): json.loads(i.value_json) for i in record.history.item}
                )
                continue
            else:
                continue
            self.config.update({_item_key(u): json.loads(u.value_json) for u in updates})

    def scalars(self):
        """tag -> [(env step, value)] in the order they were logged."""
        logged = {}
        for row in self.rows:
            for tag in row.keys() - _WANDB_COLUMNS:
                logged.setdefault(tag, []).append((row.get("env_step"), row[tag]))
        return logged


def _wandb_runs(directory):
    """The W&B runs under ``directory``, oldest first."""
    return [WandbRun(path) for path in sorted(Path(directory).glob("**/offline-run-*/*.wandb"))]


def _tensorboard(run_dir):
    """tag -> [(step, value)] of the run's event files, as tensorboard reads them."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _assert_same_scalars(wandb_scalars, run_dir):
    """W&B got every tensorboard scalar at its step with its value (as float32 holds it), in
    the same order, and nothing else."""
    tensorboard = _tensorboard(run_dir)
    assert {"reward/train", "reward/eval", "macro_loss/total_loss"} <= tensorboard.keys()
    assert wandb_scalars.keys() == tensorboard.keys()
    for tag, points in tensorboard.items():
        logged = [(step, np.float32(value)) for step, value in wandb_scalars[tag]]
        assert logged == points, tag


def _run_dir(log_dir):
    (run_dir,) = Path(log_dir, "CartPole-v1").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A 40-step run with --wandb-project, then resumed to 80 steps."""
    pytest.importorskip("wandb")
    tmp_path = tmp_path_factory.mktemp("wandb")
    env = _offline_env(tmp_path)
    log_dir = tmp_path / "logs"
    _train([*TINY, *EVALUATED, "--log-dir", str(log_dir), "--wandb-project", "fnrl-test"], env)
    run_dir = _run_dir(log_dir)
    _train(["--resume", str(run_dir), "-mts", "80"], env)
    return run_dir


def test_a_wandb_run_gets_every_tensorboard_scalar_and_the_config(resumed):
    first, second = _wandb_runs(resumed / "wandb")
    logged = first.scalars()
    for tag, points in second.scalars().items():
        logged.setdefault(tag, []).extend(points)
    _assert_same_scalars(logged, resumed)
    assert max(step for step, _ in logged["reward/train"]) > 40  # the resume's too
    stored = json.loads((resumed / "config.json").read_text())  # the resume's
    assert {k: v for k, v in second.config.items() if k != "_wandb"} == stored
    assert first.config["max_train_steps"] == 40 and stored["max_train_steps"] == 80


def test_a_resume_continues_the_wandb_run_named_after_the_run_directory(resumed):
    first, second = _wandb_runs(resumed / "wandb")
    assert first.id == second.id == wandb_run_id(resumed.name) == resumed.name
    assert first.name == second.name == resumed.name


def test_a_run_started_in_a_wandb_run_logs_into_it(tmp_path):
    """CleanRL's way: ``wandb.init(sync_tensorboard=True)``, then the command line, in one
    process; the W&B run gets the scalars and the config, and stays the script's."""
    pytest.importorskip("wandb")
    log_dir = tmp_path / "logs"
    script = textwrap.dedent(
        f"""
        import sys, wandb, fnrl.train
        run = wandb.init(project="cleanrl-way", dir={str(tmp_path)!r}, sync_tensorboard=True)
        code = fnrl.train.main({[*TINY, *EVALUATED, "--log-dir", str(log_dir)]!r})
        run.log({{"after": 1.0}})  # still open
        run.finish()
        sys.exit(code)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=_offline_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = _run_dir(log_dir)
    assert not (run_dir / "wandb").exists()  # no run of its own
    (run,) = _wandb_runs(tmp_path / "wandb")
    scalars = run.scalars()
    assert scalars.pop("after") == [(None, 1.0)]
    _assert_same_scalars(scalars, run_dir)
    stored = json.loads((run_dir / "config.json").read_text())
    assert {k: run.config[k] for k in stored} == stored


def test_wandb_project_without_wandb_is_one_line_and_exit_2_before_anything_is_written(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "wandb.py").write_text("raise ImportError('No module named wandb')\n")
    path = os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")]))
    log_dir = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", *TINY, "--log-dir", str(log_dir)]
        + ["--wandb-project", "fnrl-test"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline"},
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--wandb-project" in line and ".[wandb]" in line
    assert not log_dir.exists()


def test_a_wandb_project_name_wandb_refuses_is_a_bad_flag():
    with pytest.raises(SystemExit) as raised:
        parse_args(["--wandb-project", "team/project"])
    assert raised.value.code == 2


def test_wandb_run_ids_are_the_run_names_made_valid_and_distinct():
    name = "local_ActorCritic_IdentityLinear_seed0_2026-12-02_18-06-37"
    assert wandb_run_id(name) == name
    a, b = wandb_run_id(f"a:b_{name}"), wandb_run_id(f"a;b_{name}")
    assert a != b and a == wandb_run_id(f"a:b_{name}")
    assert not set(":;,#?/'") & set(a + b)
    long = wandb_run_id("x" * 300)
    assert len(long) <= 100 and long != wandb_run_id("x" * 301)
