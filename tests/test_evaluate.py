"""``python -m fnrl.evaluate``: returns of saved policies, results files, clear errors.

The slow tests share one CartPole run trained to the threshold with the preset (the local-mode
learning test) and evaluate and render it.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from saved_runs import untrained_run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl import evaluate, render
from fnrl.config import make_config
from fnrl.parallel.local import train_local


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The bare command's settings: 500k environment steps, about 20 s on 2 CPU cores; a
    checkpoint after the first update and at the end only (the preset's five would prune the
    untrained one)."""
    config = make_config(log_dir=str(tmp_path_factory.mktemp("cartpole")), epoch_len=1_000_000)
    return config, train_local(config)


@pytest.mark.slow
def test_cartpole_preset_reaches_475_within_500k_steps(trained):
    config, result = trained
    assert config.env_id == "CartPole-v1" and config.max_train_steps == 500_000
    last = result.episode_returns[-20:]
    assert len(last) == 20 and np.mean(last) >= 475, np.mean(last)
    events = EventAccumulator(str(result.run_dir))
    events.Reload()
    logged = [e.value for e in events.Scalars("reward/train")]
    assert logged[-20:] == pytest.approx(last)
    # evaluated every 25k steps by default, at the first update (80 steps) ending at or after
    # each multiple: 20 points of 10 greedy games
    evaluations = [e.step for e in events.Scalars("reward/eval")]
    assert evaluations == [-(-k // 80) * 80 for k in range(25_000, 500_001, 25_000)]
    with open(result.run_dir / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["step"]) for row in rows] == evaluations
    assert all(int(row["episodes"]) == 10 for row in rows)
    assert float(rows[-1]["mean"]) >= 475, rows[-1]


@pytest.mark.slow
def test_trained_checkpoint_scores_475_and_untrained_one_much_less(trained, capsys):
    _, result = trained
    run_dir = result.run_dir
    args = [str(run_dir), "--all-checkpoints", "--episodes", "20", "--nb-env", "10"]
    assert evaluate.main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_dir / "eval" / "results.json").read_text())
    assert summary["greedy"] and summary["seed"] == 2_000_000
    first, last = summary["checkpoints"][0], summary["checkpoints"][-1]
    # the checkpoint after the first update, and the final one
    assert (first["checkpoint"], last["checkpoint"]) == ("step_80", "step_500000")
    assert first["episodes"] == last["episodes"] == 20
    assert last["return"]["mean"] >= 475, last["return"]
    assert first["return"]["mean"] < 100, first["return"]
    assert summary["best"] == "step_500000"
    assert last["return"]["mean"] == pytest.approx(np.mean(last["returns"]))
    assert last["return"]["min"] == min(last["returns"])
    assert "step_500000 (500000 steps, 500000 frames): return mean" in out
    with open(run_dir / "eval" / "step_500000.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["return"]) for row in rows] == last["returns"]
    assert [int(row["length"]) for row in rows] == last["lengths"]
    with open(run_dir / "eval" / "eval.csv") as f:
        assert [row["checkpoint"] for row in csv.DictReader(f)] == ["step_80", "step_500000"]
    plot = iio.imread(run_dir / "eval" / "learning_curve.png")
    assert plot.ndim == 3 and plot.shape[0] > 100 and plot.shape[1] > 100


@pytest.mark.slow
def test_render_of_the_trained_policy_has_a_frame_per_step(trained, tmp_path, capsys):
    _, result = trained
    out = tmp_path / "cartpole.mp4"
    assert render.main([str(result.run_dir), "--episodes", "1", "--out", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    returns, length, frames = (float(part.split()[-1]) for part in line.split(": ")[1].split(","))
    assert returns == length >= 400  # CartPole pays 1 per step; the trained policy lasts
    video = iio.imread(out)
    assert video.shape == (frames, 400, 600, 3) and frames == length + 1


def test_greedy_evaluation_is_reproducible_and_sampling_differs(tmp_path):
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    checkpoint = [run_dir / "checkpoints" / "step_0"]
    greedy = evaluate.evaluate_checkpoints(run_dir, checkpoint, episodes=6, nb_env=3)
    again = evaluate.evaluate_checkpoints(run_dir, checkpoint, episodes=6, nb_env=3)
    sampled = evaluate.evaluate_checkpoints(run_dir, checkpoint, episodes=6, nb_env=3, greedy=False)
    assert greedy[0]["returns"] == again[0]["returns"]
    assert greedy[0]["returns"] != sampled[0]["returns"]
    assert greedy[0]["episodes"] == 6 and greedy[0]["env_steps"] == 0


def test_checkpoint_of_another_network_gives_one_clear_error(tmp_path, capsys):
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    config_file = run_dir / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "env_id": "Acrobot-v1"}))  # 6 inputs, not 4
    assert evaluate.main([str(run_dir), "--episodes", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fnrl.evaluate: error: checkpoint")
    assert "does not fit this network: params['params']['body']['linear']['kernel'] is " in err
    assert "float32[4, 512] in the checkpoint but float32[6, 512] here" in err
    config_file.write_text(json.dumps({**config, "network_body": "LSTM"}))
    assert evaluate.main([str(run_dir), "--episodes", "1"]) == 1
    assert "is corrupt or from another network" in capsys.readouterr().err


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "fnrl.evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_bad_input_ends_with_one_clear_line(tmp_path, capsys):
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    assert evaluate.main([str(run_dir), "--checkpoint", "7"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint '7'" in err, err
    state_file = run_dir / "checkpoints" / "step_0" / "state.msgpack"
    os.truncate(state_file, state_file.stat().st_size // 2)
    for args, phrase in [
        ((tmp_path / "nowhere",), "is not a run directory"),
        ((run_dir,), "step_0 is corrupt: state.msgpack does not match its checksum"),
    ]:
        result = _cli(*args)  # as users run it
        assert result.returncode == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if "fnrl.evaluate" in line]
        assert len(lines) == 1 and phrase in lines[0], result.stderr


def test_all_checkpoints_skips_those_it_cannot_read_with_one_warning_each(tmp_path, capsys):
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    checkpoints = run_dir / "checkpoints"
    shutil.copytree(checkpoints / "step_0", checkpoints / "step_5")
    os.truncate(checkpoints / "step_5" / "state.msgpack", 10)
    (checkpoints / "step_9").mkdir()  # a copy still under way
    args = [str(run_dir), "--all-checkpoints", "--episodes", "2", "--nb-env", "2"]
    assert evaluate.main(args) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"fnrl.evaluate: warning: skipping step_5: checkpoint {checkpoints / 'step_5'} is "
        "corrupt: state.msgpack does not match its checksum",
        f"fnrl.evaluate: warning: skipping step_9: cannot read checkpoint {checkpoints / 'step_9'}"
        f": [Errno 2] No such file or directory: '{checkpoints / 'step_9' / 'state.msgpack'}'",
    ]
    summary = json.loads((run_dir / "eval" / "results.json").read_text())
    assert [r["checkpoint"] for r in summary["checkpoints"]] == ["step_0"]
    assert list(summary["skipped"]) == ["step_5", "step_9"]

    os.truncate(checkpoints / "step_0" / "state.msgpack", 10)
    assert evaluate.main(args) == 1
    *warnings, error = capsys.readouterr().err.splitlines()
    assert len(warnings) == 3 and warnings[0].startswith("fnrl.evaluate: warning: skipping step_0")
    assert error == f"fnrl.evaluate: error: none of the 3 checkpoints in {checkpoints} is readable"


def test_all_checkpoints_curve_draws_the_runs_evaluations_during_training(
    tmp_path, monkeypatch, capsys
):
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    (run_dir / "eval.csv").write_text(
        "step,frames,mean,std,min,max,episodes\n0,0,9.0,1.0,8.0,10.0,10\n80,80,12.0,2.0,9.0,15.0,10\n"
    )
    drawn = []
    plot_learning_curve = evaluate.plot_learning_curve

    def spy(results, path, title, **kwargs):
        drawn.append(kwargs.get("training"))
        return plot_learning_curve(results, path, title, **kwargs)

    monkeypatch.setattr(evaluate, "plot_learning_curve", spy)
    args = [str(run_dir), "--all-checkpoints", "--episodes", "2", "--nb-env", "2"]
    assert evaluate.main(args) == 0
    (training,) = drawn
    assert training is not None, "the curve leaves out the run's evaluations"
    assert training.frames.tolist() == [0, 80] and training.mean.tolist() == [9.0, 12.0]
    assert capsys.readouterr().err == ""
    # an eval.csv that does not parse leaves the curve to the checkpoints, with a warning
    (run_dir / "eval.csv").write_text("step,frames\n0,0\n")
    assert evaluate.main(args) == 0
    assert drawn[-1] is None and (run_dir / "eval" / "learning_curve.png").exists()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("fnrl.evaluate: warning: leaving the run's evaluations out: ")


def test_results_on_a_full_disk_end_in_one_line_naming_the_file(tmp_path, capsys):
    run_dir = untrained_run(tmp_path, network_body="Linear", normalize=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").symlink_to("/dev/full")  # every write fails with ENOSPC
    args = [str(run_dir), "--episodes", "1", "--nb-env", "1", "--out-dir", str(out)]
    assert evaluate.main(args) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"fnrl.evaluate: error: cannot write {out / 'results.json'}: "
        "[Errno 28] No space left on device"
    ]
