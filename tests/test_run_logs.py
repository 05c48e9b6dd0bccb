"""What a training run reports as it goes: console lines on any stdout, tensorboard metrics
every ``--log-interval`` updates, and the CSV curves of training games and evaluations."""

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl.config import TrainConfig
from fnrl.logging import EPISODES_COLUMNS, CsvLog, env_folder, make_run_dir
from fnrl.parallel.build import RunHooks, make_training_env
from fnrl.parallel.evaluation import EVAL_THREAD_SEED_OFFSET
from fnrl.parallel.local import train_local

SMALL = dict(env_id="CartPole-v1", nb_env=2, exp_length=5, network_body="Linear", nb_eval_env=0)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_training_with_stdout_redirected_to_a_file_prints_summary_and_evaluation_lines(
    tmp_path,
):
    out = tmp_path / "out.txt"
    command = [sys.executable, "-m", "fnrl.train", "-n", "2", "--exp-length", "5", "-mts", "400"]
    command += ["--summary-frequency", "1e-9", "--eval-every", "200", "--eval-episodes", "2"]
    with open(out, "w") as stdout:
        done = subprocess.run(
            [*command, "--log-dir", str(tmp_path)],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    steps = [int(line.split()[1]) for line in lines if line.startswith("STEP: ")]
    # one line per update (the frequency is ~0 s) after the first, whose time is compilation
    assert steps == list(range(20, 401, 10))
    assert [line.split()[2] for line in lines if line.startswith("EVAL: ")] == ["200", "400"]
    assert lines[-2].startswith("finished: 400 steps") and "recent return" in lines[-2]
    run_dir = next((tmp_path / "CartPole-v1").iterdir())
    assert lines[-1] == f"learning curves: {run_dir / 'learning_curves.png'}"
    assert (run_dir / "learning_curves.png").stat().st_size > 10_000
    assert "\r" not in out.read_text(), "a progress bar was drawn off a terminal"
    assert "precision" not in done.stderr


def test_tensorboard_gets_the_means_of_every_log_interval_updates(tmp_path):
    config = TrainConfig(**SMALL, max_train_steps=300, log_interval=10, log_dir=str(tmp_path))
    result = train_local(config)
    assert result.updates == 30
    # named after what ran: the vector trunk (not the unused vision one), the body and the seed
    assert result.run_dir.name.startswith("local_ActorCritic_IdentityLinear_seed0_2")
    events = EventAccumulator(str(result.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    loss = events.Scalars("macro_loss/total_loss")
    assert [e.step for e in loss] == [100, 200, 300]
    means = [np.mean([m["total_loss"] for m in result.metrics[i : i + 10]]) for i in (0, 10, 20)]
    np.testing.assert_allclose([e.value for e in loss], means, rtol=1e-6)
    rates = events.Scalars("metric/learning_rate")
    assert [e.value for e in rates] == pytest.approx([config.learning_rate] * 3)
    speeds = [e.value for e in events.Scalars("metric/frames_per_second")]
    assert len(speeds) == 3 and all(s > 0 for s in speeds)
    rows = _rows(result.run_dir / "episodes.csv")
    assert [float(r["return"]) for r in rows] == pytest.approx(result.episode_returns)
    assert all(r["frames"] == r["step"] for r in rows)  # CartPole: one frame per step


def test_scheduled_evaluation_plays_fresh_games_at_each_multiple_of_eval_every(tmp_path):
    config = TrainConfig(
        **SMALL, max_train_steps=300, eval_every=100, eval_episodes=3, log_dir=str(tmp_path)
    )
    result = train_local(config)
    rows = _rows(result.run_dir / "eval.csv")
    assert [int(r["step"]) for r in rows] == [100, 200, 300]
    assert all(int(r["episodes"]) == 3 for r in rows)
    for row in rows:
        assert float(row["min"]) <= float(row["mean"]) <= float(row["max"])
    events = EventAccumulator(str(result.run_dir))
    events.Reload()
    logged = events.Scalars("reward/eval")
    assert [e.value for e in logged] == pytest.approx([float(r["mean"]) for r in rows])
    log = (result.run_dir / "train_log.txt").read_text()
    assert "EVAL: STEP: 300 REWARD:" in log and "evaluation=" in log  # its own phase


def _evaluation_envs(on_reset, on_close=lambda: None):
    """An env factory whose evaluation envs (seeds from ``EVAL_THREAD_SEED_OFFSET`` up, which
    no training env has) call ``on_reset(index)`` before each evaluation plays, ``index`` being
    the evaluation's number (its step over ``--eval-every``), and ``on_close()`` after it."""

    def make_env(config, num_envs, seed):
        env = make_training_env(config, num_envs, seed)
        if seed < EVAL_THREAD_SEED_OFFSET:
            return env
        index = (seed - EVAL_THREAD_SEED_OFFSET - config.seed) // num_envs
        reset, close = env.reset, env.close

        def evaluation_reset():
            on_reset(index)
            return reset()

        def evaluation_close():
            close()
            on_close()

        env.reset, env.close = evaluation_reset, evaluation_close
        return env

    return make_env


def test_scheduled_evaluations_play_beside_training_and_do_not_depend_on_its_timing(tmp_path):
    config = TrainConfig(**SMALL, max_train_steps=400, eval_every=100, eval_episodes=3)
    quick = train_local(dataclasses.replace(config, log_dir=str(tmp_path / "quick")))
    threads, playing, updates_while_playing = [], threading.Event(), []

    def slow_start(index):
        threads.append(threading.current_thread())
        playing.set()
        time.sleep(0.5)

    def count_update(run):
        updates_while_playing.append(playing.is_set())

    make_env = _evaluation_envs(slow_start, on_close=playing.clear)
    hooks = RunHooks(make_env=make_env, on_update=count_update)
    slow = train_local(dataclasses.replace(config, log_dir=str(tmp_path / "slow")), hooks=hooks)
    assert len(threads) == 4 and threading.main_thread() not in threads
    assert any(updates_while_playing), "no update was recorded while an evaluation played"
    # the same games, logged in order, every one before the run returned
    assert _rows(slow.run_dir / "eval.csv") == _rows(quick.run_dir / "eval.csv")
    assert [int(r["step"]) for r in _rows(slow.run_dir / "eval.csv")] == [100, 200, 300, 400]


def test_a_failed_scheduled_evaluation_ends_the_run_with_its_error(tmp_path):
    def crash(index):
        raise RuntimeError(f"evaluation env {index} crashed")

    config = TrainConfig(**SMALL, max_train_steps=400, eval_every=100, log_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="evaluation env 1 crashed"):
        train_local(config, hooks=RunHooks(make_env=_evaluation_envs(crash)))


def test_a_resumed_csv_drops_the_rows_written_after_the_resume_step(tmp_path):
    path = tmp_path / "episodes.csv"
    log = CsvLog(path, EPISODES_COLUMNS)
    for step in (10, 20, 30, 40):
        log.write((step, step * 4, 1.5, 7))
    log.close()
    log = CsvLog(path, EPISODES_COLUMNS, purge_step=21)  # resumed from step 20
    log.write((30, 120, 2.5, 8))
    log.close()
    rows = _rows(path)
    assert [(r["step"], r["return"]) for r in rows] == [("10", "1.5"), ("20", "1.5"), ("30", "2.5")]
    assert list(rows[0]) == list(EPISODES_COLUMNS)


def test_a_reader_that_goes_away_leaves_the_run_to_train_and_save(tmp_path):
    # `python -m fnrl.train | head -2`: stdout breaks after two lines, at every later summary
    # line (one per update here); the console is a convenience, the run is not.
    command = [sys.executable, "-m", "fnrl.train", "-n", "2", "--exp-length", "5", "-mts", "2000"]
    command += ["-sf", "1e-9", "--eval-every", "0", "--log-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = [process.stdout.readline() for _ in range(2)]
    process.stdout.close()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "Broken pipe" not in stderr, stderr
    assert head == [  # what the run trains and for how long comes first
        "local ActorCritic on CartPole-v1: 2 envs x 5 steps per update, 2,000 steps; a "
        "checkpoint every 100,000; no evaluation\n",
        "Network parameters: 5,123\n",
    ]
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    assert (run_dir / "checkpoints" / "step_2000").is_dir()
    assert "END: steps 2000" in (run_dir / "train_log.txt").read_text()


def test_ctrl_c_with_a_tee_that_dies_too_still_saves_the_stop_checkpoint(tmp_path):
    # `python -m fnrl.train | tee log`, then Ctrl-C: tee ends with the same signal, and the
    # run's next console line finds no reader; it must still stop at its update and save.
    command = [sys.executable, "-m", "fnrl.train", "-n", "2", "--exp-length", "5", "-mts", "1e7"]
    command += ["-sf", "1e-9", "--eval-every", "0", "--log-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not process.stdout.readline().startswith("STEP:"):  # training has started
        pass
    process.stdout.close()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    steps = [int(p.name.removeprefix("step_")) for p in (run_dir / "checkpoints").iterdir()]
    assert max(steps) > 10 and "Broken pipe" not in stderr, (steps, stderr)
    assert f"END: steps {max(steps)}" in (run_dir / "train_log.txt").read_text()


def test_a_module_env_ids_run_directory_has_no_colon(tmp_path):
    """``module:Id``'s folder was ``module:Id``, which ``scp`` and ``PATH``-like lists misread."""
    run_dir = make_run_dir(str(tmp_path), "toy_envs:Corridor-v0", "local_run")
    assert env_folder("toy_envs:Corridor-v0") == "toy_envs.Corridor-v0"
    assert run_dir == tmp_path / "toy_envs.Corridor-v0" / "local_run" and run_dir.is_dir()
