"""``benchmarks/learning.py``: adept's scoring protocol, the table, and runs read, trained and
resumed as a user runs the benchmark."""

import importlib.util
import json
import math
import subprocess
from pathlib import Path

import pytest

_PATH = Path(__file__).parents[1] / "benchmarks" / "learning.py"
_SPEC = importlib.util.spec_from_file_location("learning_benchmark", _PATH)
learning = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(learning)

CARTPOLE = learning.Experiment(
    "CartPole-v1", "ActorCritic", 1_000, 500, (), learning.Reference(500.0, 500_000, "a source")
)


def _result(seed, means, experiment=CARTPOLE, error=None):
    frames = [500 * (i + 1) for i in range(len(means))]
    return learning.RunResult(experiment, seed, None, frames, means, 60.0 * (seed + 1), error)


def test_score_is_the_best_evaluation_and_rows_spread_it_over_seeds():
    results = [
        _result(0, [1.0, 3.0, 2.0]),
        _result(1, [5.0, 4.0]),
        _result(2, [10.0, 7.0]),
        _result(3, [], error="ValueError: boom"),
    ]
    assert [r.score for r in results] == [3.0, 5.0, 10.0, None]
    assert [r.last for r in results] == [2.0, 4.0, 7.0, None]
    (row,) = learning.summarize(results)
    assert (row["seeds"], row["failed"]) == (3, [3])
    assert row["score"]["mean"] == 6.0 and math.isclose(row["score"]["std"], math.sqrt(13.0))
    assert (row["score"]["min"], row["score"]["max"]) == (3.0, 10.0)
    assert row["last"]["mean"] == pytest.approx(13 / 3)
    assert row["minutes_per_run"] == 2.5  # 1, 2, 3 and 4 minutes
    table = learning.format_table([row])
    assert "| CartPole-v1 | ActorCritic | 1k | 3 (1 failed) | 6.0 ± 3.6 [3.0, 10.0] |" in table
    assert table.endswith("| 500.0 at 500k [1] |\n\n[1] a source")


def test_atari_budgets_count_frames_and_train_in_agent_steps(tmp_path):
    pong = learning.Experiment("PongNoFrameskip-v4", "ActorCritic", 10_000_000, 1_000_000)
    command = learning.train_command(pong, 2, tmp_path, 30)
    flags = dict(zip(command[4::2], command[5::2], strict=False))
    assert flags["--max-train-steps"] == "2500000" and flags["--eval-every"] == "250000"
    assert (flags["--seed"], flags["--eval-episodes"]) == ("2", "30")
    assert learning.frames_per_step("CartPole-v1") == 1
    atari50m = learning.PRESETS["atari50m"].experiments
    assert {e.reference.value for e in atari50m} == set(learning.ADEPT_TABLE.values())


def test_a_finished_run_is_read_not_trained_again(tmp_path, monkeypatch):
    run_dir = learning.run_root(tmp_path, CARTPOLE, 0) / "CartPole-v1" / "local_run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"env_id": "CartPole-v1", "seed": 0}))
    (run_dir / "eval.csv").write_text(
        "step,frames,mean,std,min,max,episodes\n1000,1000,9.0,0,9,9,30\n500,500,12.5,0,12,13,30\n"
    )
    (run_dir / "train_log.txt").write_text(
        "END: steps 600 frames 600 updates 5 seconds 5.0 bound-by env phases env=1.00s\n"
        "STEP: 1000 REWARD: 9.0\n"
        "END: steps 1000 frames 1000 updates 10 seconds 7.5 bound-by env phases env=1.00s\n"
    )

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(subprocess, "run", no_training)
    result = learning.run_one(CARTPOLE, 0, tmp_path, 30)
    assert (result.eval_frames, result.eval_means) == ([500, 1000], [12.5, 9.0])
    assert (result.score, result.seconds, result.error) == (12.5, 12.5, None)


@pytest.mark.slow
def test_the_benchmark_trains_scores_plots_and_resumes_its_runs(tmp_path, capsys):
    flags = ["--envs", "CartPole-v1", "--agents", "ActorCritic", "--seeds", "2"]
    flags += ["--eval-episodes", "2", "--out", str(tmp_path)]
    assert learning.main([*flags, "--frames", "1600"]) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "CartPole-v1.png").exists() and (tmp_path / "results.md").exists()
    for run in first["runs"]:
        rows = Path(run["run_dir"], "eval.csv").read_text().splitlines()[1:]
        means = [float(row.split(",")[2]) for row in rows]
        assert len(means) == 10 and run["score"] == max(means)  # one every 160 frames
    (row,) = first["rows"]
    assert row["seeds"] == 2 and row["score"]["max"] == max(r["score"] for r in first["runs"])

    # A larger budget resumes each run from its checkpoint: its first evaluations are kept.
    assert learning.main([*flags, "--frames", "3200"]) == 0
    second = json.loads((tmp_path / "results.json").read_text())
    for before, after in zip(first["runs"], second["runs"], strict=True):
        assert after["run_dir"] == before["run_dir"]
        assert after["eval_frames"][: len(before["eval_frames"])] == before["eval_frames"]
        assert after["eval_means"][: len(before["eval_means"])] == before["eval_means"]
        assert after["eval_frames"][-1] == 3200
        assert learning.progress(Path(after["run_dir"]))[0] == 3200
    assert "CartPole-v1 ActorCritic seed 1: best" in capsys.readouterr().out
