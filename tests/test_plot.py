"""``python -m fnrl.plot``: learning curves from a run's ``episodes.csv`` and ``eval.csv``.

The runs are hand-written CSV files next to a ``config.json``; nothing is trained.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from fnrl import evaluate, plot

ENV = "PongNoFrameskip-v4"
SETTINGS = {"env_id": ENV, "agent": "ActorCritic", "tag": "", "skip_rate": 4, "nb_env": 16}


def _run(root, name, *, episodes=None, evals=None, skip=4, **settings):
    """A run directory: ``episodes`` rows (step, return) and ``evals`` rows (step, mean, std).

    None leaves the file out, [] writes its header only. Frames are ``skip`` × steps, lengths 7,
    and every evaluation plays 10 games.
    """
    run_dir = root / ENV / name
    run_dir.mkdir(parents=True)
    config = {**SETTINGS, "seed": 0, "log_dir": str(root), **settings}
    (run_dir / "config.json").write_text(json.dumps(config))
    if episodes is not None:
        lines = ["step,frames,return,length"]
        lines += [f"{step},{step * skip},{r},7" for step, r in episodes]
        (run_dir / "episodes.csv").write_text("\n".join(lines) + "\n")
    if evals is not None:
        lines = ["step,frames,mean,std,min,max,episodes"]
        lines += [f"{s},{s * skip},{m},{sd},{m - 2 * sd},{m + 2 * sd},10" for s, m, sd in evals]
        (run_dir / "eval.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def test_recent_return_is_the_mean_of_the_last_100_games():
    assert plot.recent_return_curve([2.0, 4.0, 9.0]).tolist() == [2.0, 3.0, 5.0]
    assert plot.recent_return_curve([1.0, 2.0, 3.0, 4.0], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    returns = np.arange(250.0) ** 1.5
    expected = [np.mean(returns[max(0, i - 99) : i + 1]) for i in range(len(returns))]
    np.testing.assert_allclose(plot.recent_return_curve(returns), expected, rtol=1e-12)


def test_read_curves_reads_the_training_curve_and_the_evaluations(tmp_path):
    run_dir = tmp_path / ENV / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(SETTINGS))
    (run_dir / "episodes.csv").write_text(
        "step,frames,return,length\n16,64,-21.0,200\n32,128,-19.0,210\n32,128,-20.0,190\n"
    )
    (run_dir / "eval.csv").write_text(
        "step,frames,mean,std,min,max,episodes\n0,0,-21.0,0.0,-21.0,-21.0,5\n"
        "100,400,-18.5,1.5,-20.0,-17.0,5\n"
    )
    run = plot.read_curves(run_dir)
    assert run.config["env_id"] == ENV
    assert run.train.steps.tolist() == [16, 32, 32] and run.train.frames.tolist() == [64, 128, 128]
    assert run.train.mean.tolist() == [-21.0, -20.0, -20.0]  # (-21 - 19) / 2, (-21 - 19 - 20) / 3
    assert run.eval.steps.tolist() == [0, 100] and run.eval.frames.tolist() == [0, 400]
    assert run.eval.mean.tolist() == [-21.0, -18.5] and run.eval.std.tolist() == [0.0, 1.5]
    assert run.eval.episodes.tolist() == [5, 5]


def test_three_seeds_form_one_group_drawn_as_their_mean_and_min_max_band(tmp_path):
    # Seed s returns 10 s in every game and evaluates to step / 10 + s, on its own steps.
    runs = [
        _run(
            tmp_path,
            f"seed{s}",
            seed=s,
            log_dir=f"/elsewhere/{s}",  # where a run was written does not split a group
            episodes=[(step, 10.0 * s) for step in range(10 + 5 * s, 400, 20)],
            evals=[(step, step / 10 + s, 1.0) for step in starts],
        )
        for s, starts in enumerate([(0, 100, 200, 300), (50, 150, 250, 350), (0, 100, 200, 300)])
    ]
    other = _run(
        tmp_path, "ppo", agent="PPO", episodes=[(8, 1.0), (16, 3.0)], evals=[(8, 2.0, 0.5)]
    )
    result = plot.plot_runs([*runs, other], None, x="steps")

    group, single = result.eval
    assert group.label == "agent=ActorCritic (n=3 seeds)" and group.runs == tuple(runs)
    assert single.label == "agent=PPO (n=1 seed)" and group.band == "min–max over seeds"
    # the range all three seeds cover, at their own steps
    assert group.x.tolist() == [50, 100, 150, 200, 250, 300]
    np.testing.assert_allclose(group.y, group.x / 10 + 1)
    np.testing.assert_allclose(group.low, group.x / 10)
    np.testing.assert_allclose(group.high, group.x / 10 + 2)
    # a single run's band is its std over games
    assert single.x.tolist() == [8]
    assert (single.low.tolist(), single.high.tolist()) == ([1.5], [2.5])

    train = result.train[0]
    assert (train.x[0], train.x[-1]) == (20, 380)  # seed 2's first and last games
    assert train.y.tolist() == [10.0] * len(train.x)
    assert (set(train.low.tolist()), set(train.high.tolist())) == ({0.0}, {20.0})
    assert result.figure.axes[0].get_legend().get_title().get_text() == "band: min–max over seeds"
    assert result.figure.texts[0].get_text() == ENV


def test_runs_of_one_seed_count_once_drawing_the_longest_with_a_warning(tmp_path, capsys):
    # Seed 0 twice, a run killed at step 100 and a rerun that went on: one seed, not two.
    killed = _run(tmp_path, "seed0", evals=[(0, 9.0, 1.0), (100, 9.0, 1.0)])
    rerun = _run(tmp_path, "seed0_rerun", evals=[(s, s / 100, 1.0) for s in (0, 100, 200, 300)])
    other = _run(
        tmp_path, "seed1", seed=1, evals=[(s, s / 100 + 2, 1.0) for s in (0, 100, 200, 300)]
    )
    result = plot.plot_runs([killed, rerun, other], None, x="steps")

    (series,) = result.eval
    assert series.label.endswith("(n=2 seeds)") and series.runs == (rerun, other)
    assert series.x.tolist() == [0, 100, 200, 300] and series.y.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert series.stops == ()  # the killed run is not drawn, so it stops nothing
    legend = result.figure.axes[0].get_legend()
    assert legend.get_texts()[0].get_text() == "mean of n=2 seeds"
    (warning,) = result.warnings
    assert str(killed) in warning and str(rerun) in warning and "seed 0" in warning

    assert plot.main([str(killed), str(rerun), str(other), "--out", str(tmp_path / "p.png")]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"fnrl.plot: warning: {warning}"


def test_a_seed_that_stops_early_is_noted_and_the_others_are_drawn_to_their_end(tmp_path):
    # Seed s evaluates to step / 100k + s every 100k steps up to 1M; seed 2 stops at 300k.
    # Seed s returns 10 s in every game; seed 2's last game ends at step 280k.
    def run(s, last):
        evals = [(step, step / 100_000 + s, 1.0) for step in range(0, last + 1, 100_000)]
        games = [(step, 10.0 * s) for step in range(10_000 + 5_000 * s, last, 20_000)]
        return _run(tmp_path, f"seed{s}", seed=s, evals=evals, episodes=games)

    runs = [run(0, 1_000_000), run(1, 1_000_000), run(2, 300_000)]
    result = plot.plot_runs(runs, None, x="steps")

    (eval_,) = result.eval
    assert eval_.label.endswith("(n=3 seeds, 1 of 3 seeds stops at 300k steps)")
    assert eval_.stops == ((runs[2], 300_000.0),)
    assert eval_.x.tolist() == list(range(0, 1_000_001, 100_000))
    three = eval_.x <= 300_000  # the mean and band over the seeds present at each step
    np.testing.assert_allclose(eval_.y, eval_.x / 100_000 + np.where(three, 1.0, 0.5))
    np.testing.assert_allclose(eval_.low, eval_.x / 100_000)
    np.testing.assert_allclose(eval_.high, eval_.x / 100_000 + np.where(three, 2.0, 1.0))

    (train,) = result.train
    assert train.stops == ((runs[2], 280_000.0),)
    # seed 1's last game ends at 995k, seed 0's at 990k: the end they share, nothing noted
    assert (train.x[0], train.x[-1]) == (20_000, 990_000)
    np.testing.assert_allclose(train.y, np.where(train.x <= 280_000, 10.0, 5.0))
    # the stop is marked on the curve, and the legend says where
    marks = [line for line in result.figure.axes[1].get_lines() if line.get_label() == "_stop"]
    assert [(m.get_xdata().tolist(), m.get_ydata().tolist()) for m in marks] == [
        ([300_000.0], [4.0])
    ]
    texts = [t.get_text() for t in result.figure.axes[1].get_legend().get_texts()]
    assert texts[0] == "mean of n=3 seeds (1 of 3 seeds stops at 300k steps)"


def test_mean_over_seeds_averages_the_seeds_present_at_each_x():
    x = np.arange(0, 1001, 100)
    full = (x, x / 100)
    aborted = (x[:4], x[:4] / 100 + 3)  # stops at 300
    offset = (x[:-1] + 50, x[:-1] / 100 + 6)  # 50 steps off the others: ends at 950, not early
    mean = plot.mean_over_seeds([full, aborted, offset])
    assert mean.stops == ((1, 300.0),)
    # from the latest first x to the earliest last x of the seeds that do not stop early
    assert mean.x.tolist() == list(range(50, 951, 50))
    assert mean.seeds.tolist() == [3 if x <= 300 else 2 for x in mean.x]
    offset_y = np.interp(mean.x, *offset)
    with_aborted = (mean.x / 100 + mean.x / 100 + 3 + offset_y) / 3
    np.testing.assert_allclose(
        mean.mean, np.where(mean.seeds == 3, with_aborted, (mean.x / 100 + offset_y) / 2)
    )
    np.testing.assert_allclose(mean.high, offset_y)
    np.testing.assert_allclose(mean.low, mean.x / 100)


def test_the_mode_names_groups_and_devices_processes_and_paths_do_not(tmp_path):
    towered = {
        "gpu_id": "",
        "devices": "",
        "coordinator_address": "",
        "num_processes": 1,
        "process_id": 0,
        "heartbeat_timeout": 100,
        "num_grads_to_drop": 0,
    }
    evals = [(8, 1.0, 0.0)]
    local = [
        _run(tmp_path, "local0", gpu_id=0, imports="", compilation_cache=True, evals=evals),
        # another device, plug-ins and cache: the same experiment, a second seed
        _run(
            tmp_path,
            "local1",
            seed=1,
            gpu_id=1,
            imports="my_plugins",
            compilation_cache=False,
            resume="/tmp/x",
            evals=evals,
        ),
    ]
    towered_runs = [
        _run(tmp_path, "towered0", **towered, evals=evals),
        _run(
            tmp_path,
            "towered1",
            **{**towered, "gpu_id": "0,1", "process_id": 1},
            seed=1,
            evals=evals,
        ),
    ]
    impala = _run(tmp_path, "impala", nb_actor=2, batch_size=2, evals=evals)
    result = plot.plot_runs([*local, *towered_runs, impala], None)
    assert [s.label for s in result.eval] == [
        "mode=local (n=2 seeds)",
        "mode=towered (n=2 seeds)",
        "mode=impala (n=1 seed)",
    ]
    labels = [
        s.label for s in plot.plot_runs(local[:1] + towered_runs[:1], None, label_by=["mode"]).eval
    ]
    assert labels == ["mode=local (n=1 seed)", "mode=towered (n=1 seed)"]


def test_legends_sit_below_the_panels_within_the_figure(tmp_path):
    # 6 groups of 2 seeds that differ in 5 settings: long labels, under both panels.
    runs = [
        _run(
            tmp_path,
            f"run{i}",
            seed=i % 2,
            agent=("ActorCriticVtrace", "PPO")[i // 2 % 2],
            network_body=("LSTM", "Linear")[i // 2 % 2],
            vision_network=("FourConv", "IMPALAResNet", "Nature")[i // 4],
            exp_length=20 + i // 2,
            learning_rate=0.0007 if i < 6 else 0.00025,
            episodes=[(step, float(step)) for step in range(4, 400, 4)],
            evals=[(step, float(step), 1.0) for step in range(0, 400, 50)],
        )
        for i in range(12)
    ]
    many = plot.plot_runs(runs, tmp_path / "many.png")
    assert len(many.eval) == 6 and "+1 more" in many.eval[0].label
    _assert_legends_outside_axes(many.figure)
    _assert_legends_outside_axes(plot.plot_runs(runs[:1], tmp_path / "one.png").figure)


def _assert_legends_outside_axes(figure):
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    legends = []
    for ax in figure.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer)), "a legend covers curves"
        assert not legend.overlaps(ax.xaxis.get_tightbbox(renderer)), "a legend covers a label"
        assert figure.bbox.contains(legend.x0, legend.y0) and figure.bbox.contains(
            legend.x1, legend.y1
        ), "a legend leaves the figure"
        assert not any(legend.overlaps(other) for other in legends), "legends overlap"
        legends.append(legend)


def test_label_by_names_groups_by_the_chosen_settings_alone(tmp_path):
    # Two agents whose own defaults differ too: labelled by every difference, or by the agent.
    a2c = _run(tmp_path, "a2c", evals=[(8, 1.0, 0.0)])
    ppo = _run(tmp_path, "ppo", agent="PPO", nb_env=4, evals=[(8, 2.0, 0.0)])
    labels = [s.label for s in plot.plot_runs([a2c, ppo], None).eval]
    assert labels == [
        "agent=ActorCritic, nb_env=16 (n=1 seed)",
        "agent=PPO, nb_env=4 (n=1 seed)",
    ]
    labels = [s.label for s in plot.plot_runs([a2c, ppo], None, label_by=["agent"]).eval]
    assert labels == ["agent=ActorCritic (n=1 seed)", "agent=PPO (n=1 seed)"]
    out = tmp_path / "agents.png"
    assert plot.main([str(a2c), str(ppo), "--label-by", "agent", "--out", str(out)]) == 0
    assert out.exists()


def test_many_points_are_averaged_on_a_grid_of_500(tmp_path):
    runs = [
        _run(tmp_path, f"s{s}", seed=s, episodes=[(step, 1.0) for step in range(s, 3000, 2)])
        for s in range(2)
    ]
    (series,) = plot.plot_runs(runs, None).train
    assert len(series.x) == 500 and series.x[0] == 4 and series.x[-1] == 4 * 2998


def test_x_in_frames_scales_steps_by_the_frame_skip(tmp_path):
    run_dir = _run(tmp_path, "run", episodes=[(10, 1.0), (30, 2.0)], evals=[(20, 5.0, 1.0)])
    steps, frames = (plot.plot_runs([run_dir], None, x=x) for x in ("steps", "frames"))
    assert steps.train[0].x.tolist() == [10, 30] and frames.train[0].x.tolist() == [40, 120]
    assert steps.eval[0].x.tolist() == [20] and frames.eval[0].x.tolist() == [80]
    assert {ax.get_xlabel() for ax in steps.figure.axes} == {"agent steps (summed over envs)"}
    assert {ax.get_xlabel() for ax in frames.figure.axes} == {"frames (agent steps × frame skip)"}
    with pytest.raises(ValueError, match="x must be one of steps, frames"):
        plot.plot_runs([run_dir], None, x="seconds")


def test_a_run_has_a_training_and_an_evaluation_panel_with_a_point_per_row(tmp_path):
    episodes = [(16 * i, float(i % 7)) for i in range(1, 151)]
    evals = [(500 * i, float(i), 0.5) for i in range(5)]
    run_dir = _run(
        tmp_path,
        "local_ActorCritic_FourConvLinear_2026-12-02_10-00-00",
        episodes=episodes,
        evals=evals,
    )
    figure = plot.plot_runs([run_dir], None).figure
    train, eval_ = figure.axes
    assert train.get_ylabel() == "return (mean of last 100 training games)"
    assert eval_.get_ylabel() == "evaluation return (mean of 10 greedy games)"
    assert [len(line.get_xdata()) for line in train.get_lines()] == [150]
    assert [len(line.get_xdata()) for line in eval_.get_lines()] == [5]
    assert [t.get_text() for t in eval_.get_legend().get_texts()] == [
        "n=1 seed",
        "band: ± std over games",
    ]
    # one group: the title names the env and the run
    assert figure.texts[0].get_text() == f"{ENV}/{run_dir.name}"


def test_one_group_of_seeds_is_titled_by_its_run_name_without_seed_and_time(tmp_path):
    runs = [
        _run(tmp_path, f"local_PPO_FourConvLinear_seed{s}_2026-12-02_10-0{s}-00", seed=s, **kw)
        for s, kw in enumerate([{"episodes": [(4, 1.0)]}, {"episodes": [(4, 3.0)]}])
    ]
    result = plot.plot_runs(runs, None)
    assert result.figure.texts[0].get_text() == f"{ENV}/local_PPO_FourConvLinear"
    assert result.train[0].y.tolist() == [2.0]
    legend = result.figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "mean of n=2 seeds",
        "band: min–max over seeds",
    ]


def test_missing_and_header_only_files_leave_out_their_panel(tmp_path):
    only_train = plot.plot_runs([_run(tmp_path, "a", episodes=[(4, 1.0)])], None)
    assert len(only_train.figure.axes) == 1 and only_train.eval == ()
    only_eval = plot.plot_runs([_run(tmp_path, "b", episodes=[], evals=[(4, 1.0, 0.0)])], None)
    assert len(only_eval.figure.axes) == 1 and only_eval.train == ()
    assert only_eval.figure.axes[0].get_title() == "evaluation"
    for name, kwargs in [("c", {}), ("d", {"episodes": [], "evals": []})]:
        run_dir = _run(tmp_path, name, **kwargs)
        assert (
            plot.write_run_plot(run_dir) is None and not (run_dir / "learning_curves.png").exists()
        )
        with pytest.raises(ValueError, match="nothing to plot"):
            plot.plot_runs([run_dir], None)


def test_a_row_cut_short_by_a_killed_run_is_left_out(tmp_path):
    run_dir = _run(tmp_path, "run", episodes=[(4, 1.0), (8, 3.0)])
    with open(run_dir / "episodes.csv", "a") as f:
        f.write("12,48,5")
    assert plot.read_curves(run_dir).train.mean.tolist() == [1.0, 2.0]


def test_write_run_plot_writes_a_png_in_the_run_directory(tmp_path):
    run_dir = _run(tmp_path, "run", episodes=[(4, 1.0), (8, 3.0)], evals=[(8, 2.0, 1.0)])
    path = plot.write_run_plot(run_dir)
    assert path == run_dir / "learning_curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_evaluate_labels_its_learning_curve_as_the_run_plot_does(tmp_path):
    results = [
        {"frames": f, "episodes": 20, "return": {"mean": m, "std": 1.0, "min": m - 2, "max": m + 2}}
        for f, m in [(400, 1.0), (0, -1.0)]
    ]
    evaluate.plot_learning_curve(results, tmp_path / "curve.png", ENV)
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    figure = evaluate.plot_learning_curve(results, tmp_path / "curve.png", ENV, greedy=False)
    (axes,) = figure.axes
    assert axes.get_xlabel() == plot.X_LABELS["frames"]
    assert axes.get_ylabel() == "evaluation return (mean of 20 sampled games)"
    assert axes.get_lines()[0].get_xdata().tolist() == [0, 400]


def test_evaluate_draws_its_checkpoints_as_points_beside_the_runs_own_evaluations(tmp_path):
    # A default run keeps 2 checkpoints; its eval.csv has the evaluations during training.
    results = [
        {"frames": f, "episodes": 30, "return": {"mean": m, "std": 1.0, "min": m - 2, "max": m + 2}}
        for f, m in [(0, -1.0), (400, 1.0)]
    ]
    run_dir = _run(tmp_path, "run", evals=[(0, -1.0, 0.5), (50, 0.0, 0.5), (100, 0.5, 0.5)])
    training = plot.read_evaluations(run_dir)
    figure = evaluate.plot_learning_curve(results, tmp_path / "c.png", ENV, training=training)
    (axes,) = figure.axes
    lines = {line.get_label(): line for line in axes.get_lines()}
    checkpoints = lines["mean return of each of 2 checkpoints (± std over games)"]
    assert checkpoints.get_marker() == "o" and checkpoints.get_xdata().tolist() == [0, 400]
    during = lines["evaluations during training (mean of 10 greedy games)"]
    assert during.get_xdata().tolist() == [0, 200, 400]
    assert during.get_ydata().tolist() == [-1.0, 0.0, 0.5]
    assert "checkpoints" in axes.get_title()
    _assert_legends_outside_axes(figure)
    # without an eval.csv, the checkpoints alone
    figure = evaluate.plot_learning_curve(results, tmp_path / "c.png", ENV)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels[0] == "mean return of each of 2 checkpoints (± std over games)"
    assert not any("during training" in label for label in labels)


def test_cli_writes_the_plot_next_to_one_run_and_in_the_working_directory_for_several(
    tmp_path, monkeypatch, capsys
):
    one = _run(tmp_path, "one", episodes=[(4, 1.0)])
    two = _run(tmp_path, "two", seed=1, episodes=[(4, 2.0), (8, 2.0)])
    assert plot.main([str(one)]) == 0
    assert (one / "learning_curves.png").exists()
    monkeypatch.chdir(tmp_path)
    assert plot.main([str(one), str(two), "--x", "steps"]) == 0
    assert (tmp_path / "learning_curves.png").exists()
    assert plot.main([str(one), "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").exists()
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == f"learning curves written to {tmp_path / 'x.png'}"
    )


def test_cli_errors_are_one_line(tmp_path, capsys):
    pong = _run(tmp_path, "pong", episodes=[(4, 1.0)])
    cartpole = _run(tmp_path, "cartpole", env_id="CartPole-v1", episodes=[(4, 1.0)])
    with pytest.raises(SystemExit) as exit_:
        plot.main([str(pong), str(cartpole)])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("fnrl.plot: error: runs of different envs cannot share a plot: ")
    assert "CartPole-v1" in line
    empty = _run(tmp_path, "empty", episodes=[])
    assert plot.main([str(empty)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("fnrl.plot: error: nothing to plot: no row in episodes.csv or eval.csv")


def test_cli_refuses_a_path_that_is_no_run_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fnrl.plot", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"fnrl.plot: error: {tmp_path / 'nowhere'} is not a run directory")
