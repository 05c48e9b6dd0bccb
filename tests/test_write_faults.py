"""A full disk: a write that fails ends the run with one line naming the file, after a final
checkpoint where one can still be written, and nothing hangs.

The faults are real OS errors: ``/dev/full`` (every write fails with ENOSPC) stands in for the
tensorboard event file or ``train_log.txt``, and ``RLIMIT_FSIZE`` makes checkpoint files too
large to write (EFBIG).
"""

import json
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from saved_runs import untrained_run
from tensorboardX.record_writer import RecordWriter

from fnrl import logging as run_logging
from fnrl.checkpoint import (
    CheckpointWriteError,
    latest_checkpoint,
    list_checkpoints,
    save_checkpoint,
    verify_checkpoint,
)
from fnrl.config import TrainConfig
from fnrl.logging import LogWriteError, RunLogger
from fnrl.parallel.local import train_local
from fnrl.types import TrainState

SETTINGS = dict(
    env_id="CartPole-v1",
    nb_env=4,
    exp_length=5,
    max_train_steps=2000,
    network_body="Linear",
    summary_frequency=1e-9,  # every update writes a line and flushes
    log_interval=1,
)


def _full_disk_events(monkeypatch):
    """Event files whose every flushed write fails as on a full disk (ENOSPC)."""
    monkeypatch.setattr(run_logging, "RecordWriter", lambda path: RecordWriter("/dev/full"))


def test_a_full_disk_under_the_event_file_raises_at_once_naming_it(tmp_path, monkeypatch):
    _full_disk_events(monkeypatch)
    logger = RunLogger(tmp_path, {"a": 1}, flush_seconds=0.0)
    with pytest.raises(LogWriteError, match="No space left on device") as error:
        logger.episode(10, 1.0, 5)
    assert str(logger._events.path) in str(error.value)
    assert logger.failure is error.value
    logger.episode(20, 1.0, 5)  # once failed, the logger writes nothing and raises no more
    logger.line("after the failure")
    logger.close()
    assert "after the failure" not in (tmp_path / "train_log.txt").read_text()


@pytest.mark.parametrize("nb_eval_env", [0, 1], ids=["learner", "with-evaluation-thread"])
def test_a_run_whose_event_file_fills_the_disk_saves_a_final_checkpoint_and_names_both(
    tmp_path, monkeypatch, nb_eval_env
):
    _full_disk_events(monkeypatch)
    config = TrainConfig(**SETTINGS, log_dir=str(tmp_path), nb_eval_env=nb_eval_env, eval_every=0)
    with pytest.raises(LogWriteError) as error:
        train_local(config, show_progress=False)
    message = str(error.value)
    assert "events.out.tfevents" in message and "No space left on device" in message
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    (checkpoint,) = list_checkpoints(run_dir / "checkpoints")
    assert message.endswith(f"saved {checkpoint}") and "the run stopped at step" in message
    meta = verify_checkpoint(checkpoint)  # complete and consistent
    assert 0 < meta["env_steps"] < SETTINGS["max_train_steps"]


def test_a_checkpoint_that_cannot_be_written_names_itself_and_leaves_nothing(tmp_path):
    state = TrainState({"params": np.zeros(4096, np.float32)}, (), np.zeros(2, np.uint32), 0)
    first = save_checkpoint(tmp_path, state, {"updates": 1}, env_steps=50)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
    try:
        with pytest.raises(CheckpointWriteError) as error:
            save_checkpoint(tmp_path, state, {"updates": 2}, env_steps=100)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert (
        str(error.value)
        == f"cannot write checkpoint {tmp_path / 'step_100'}: [Errno 27] File too large"
    )
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial save left
    assert verify_checkpoint(first)["updates"] == 1


_TRAIN_ON_A_FULL_DISK = textwrap.dedent(
    """
    import sys
    from tensorboardX.record_writer import RecordWriter
    import fnrl.logging
    from fnrl.train import main

    fnrl.logging.RecordWriter = lambda path: RecordWriter("/dev/full")
    sys.exit(main(sys.argv[1:]))
    """
)

_TRAIN_WITH_FILES_OF_16_KIB = textwrap.dedent(
    """
    import resource, signal, sys
    from fnrl.train import main

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))
    sys.exit(main(sys.argv[1:]))
    """
)

_CLI = ["--env-id", "CartPole-v1", "-n", "4", "--exp-length", "5", "-mts", "2000"]


def _train(args, *, script=None):
    entry = ["-c", script] if script else ["-m", "fnrl.train"]
    command = [sys.executable, *entry, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.mark.slow  # 30 s: a run and its resume
def test_the_command_line_ends_a_full_disk_run_with_one_line_and_exit_code_1(tmp_path):
    done = _train(
        [*_CLI, "--summary-frequency", "1e-9", "--log-dir", str(tmp_path)],
        script=_TRAIN_ON_A_FULL_DISK,
    )
    assert done.returncode == 1, done.stderr
    (line,) = [text for text in done.stderr.splitlines() if text.strip()]
    assert line.startswith("fnrl.train: error: cannot write ") and "[Errno 28]" in line
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    assert line.endswith(f"saved {latest_checkpoint(run_dir / 'checkpoints')}")

    resumed = _train(["--resume", str(run_dir)])  # the disk has room again
    assert resumed.returncode == 0, resumed.stderr
    assert "finished: 2000 steps" in resumed.stdout


def test_a_resume_whose_text_log_is_on_a_full_disk_stops_in_one_line(tmp_path):
    run_dir = untrained_run(tmp_path, env_id="CartPole-v1", network_body="Linear")
    (run_dir / "train_log.txt").unlink()
    (run_dir / "train_log.txt").symlink_to("/dev/full")
    done = _train(["--resume", str(run_dir)])
    assert done.returncode == 1, done.stderr
    (line,) = [text for text in done.stderr.splitlines() if text.strip()]
    assert line == (
        f"fnrl.train: error: cannot write {run_dir / 'train_log.txt'}: "
        "[Errno 28] No space left on device"
    )


@pytest.mark.slow  # 20 s
def test_checkpoints_too_large_for_the_disk_end_the_run_in_one_line(tmp_path):
    """Every file may hold 16 KiB: the config and the logs fit, the learner state does not (the
    first checkpoint comes after the first update)."""
    done = _train(
        [*_CLI, "--log-dir", str(tmp_path)],
        script=_TRAIN_WITH_FILES_OF_16_KIB,
    )
    assert done.returncode == 1, done.stderr
    (line,) = [text for text in done.stderr.splitlines() if text.strip()]
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    checkpoints = run_dir / "checkpoints"
    assert line == (
        f"fnrl.train: error: cannot write checkpoint {checkpoints / 'step_20'}: "
        "[Errno 27] File too large"
    )
    assert list(checkpoints.iterdir()) == []
    assert json.loads((run_dir / "config.json").read_text())["nb_env"] == 4


def test_a_run_directory_removed_mid_run_ends_the_run_in_one_line(tmp_path, capsys):
    """Before: the run printed 'finished', exit 0, into a recreated directory without its
    ``config.json`` that no command could open."""
    from fnrl.parallel import RunHooks
    from fnrl.train import main

    def remove_run_dir(run):
        if run.budget.updates == 2:
            shutil.rmtree(run.run_dir)

    flags = ["-n", "2", "--exp-length", "5", "-mts", "40", "--epoch-len", "20"]
    code = main([*flags, "--log-dir", str(tmp_path)], hooks=RunHooks(on_update=remove_run_dir))
    err = capsys.readouterr().err
    assert code == 1
    assert not list(tmp_path.glob("*/*")), "the run directory was made again"
    assert err.splitlines()[-1].startswith("fnrl.train: error: cannot write checkpoint ")
    assert err.splitlines()[-1].endswith("was removed")
