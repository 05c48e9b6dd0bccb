"""Command line: ``python -m fnrl.plot RUN [RUN ...] [--x steps|frames] [--out PATH]``.

Learning curves of training runs, from the CSV files each run writes (see :mod:`fnrl.logging`):

* training return: at each finished training game (``episodes.csv``), the mean unclipped return
  of the last ``RECENT_EPISODES`` (100) games, the library's "recent return";
* evaluation return: the mean of the K greedy games of each scheduled evaluation (``eval.csv``).

Runs whose settings differ only by ``seed`` form one group, drawn as the mean over its seeds
with a band from the lowest to the highest seed, after interpolating each seed onto a common x
grid over the range its seeds cover. A seed that stops early (an aborted run) is in the mean and
band up to its last point, where a bar marks it on the curve and the legend notes it
(``1 of 3 seeds stops at 120k steps``); the others are drawn to their end. A group of one run is
drawn as its curves, the evaluation with a band of ± the std over its games. Groups are
labelled by the settings that differ between them, and counted in distinct seeds: runs of one
seed in a group (a rerun, a copy) count once, drawn from the run that reached the most steps,
with a warning line naming them (``fnrl.plot: warning: ...``). The runs of a seed are rarely
worth averaging: a rerun repeats the first, and the run that went furthest holds the most of
the seed's curve.

A run's settings are its ``config.json`` and its mode (``local``, ``towered`` or ``impala``, as
:func:`fnrl.config.config_mode` reads it from the fields config.json holds), less what does not
change what it learns: where it was written or resumed from, the devices and processes it ran
on, the plug-in modules it imported (its agent and network are settings) and the compilation
cache.

The figure has one panel per kind of curve that exists (training, evaluation) and is written as
a PNG, by default ``RUN/learning_curves.png`` for one run and ``./learning_curves.png`` for
several. Errors print one line: ``fnrl.plot: error: ...``, exit code 2 for a path that is no run
directory or runs of different envs, 1 when nothing can be plotted or written.

Impure: reads and writes files. matplotlib is imported when plotting, with its Agg backend (no
display), so that importing this module stays cheap.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fnrl.cli import CommandLineParser
from fnrl.config import config_mode
from fnrl.figures import (
    X_CHOICES,
    eval_label,
    legends_below,
    new_figure,
    style_axes,
    train_label,
)
from fnrl.figures import X_LABELS as X_LABELS  # the labels of --x's choices, for callers

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PROG = "python -m fnrl.plot"
PLOT_NAME = "learning_curves.png"

# Fields of config.json that do not change what a run learns, so that runs differing only there
# (and by seed) are seeds of one experiment: where it was written or resumed from; the devices
# and processes it ran on (local mode's gpu_id is a device index, the other modes' a list);
# the plug-ins imported, whose agent and network are settings of their own; the compile cache.
_NOT_SETTINGS = frozenset(
    {
        "seed",
        "log_dir",
        "resume",
        "gpu_id",
        "devices",
        "coordinator_address",
        "num_processes",
        "process_id",
        "heartbeat_timeout",
        "imports",
        "compilation_cache",
    }
)
# Settings named first in group labels; the others follow in alphabetical order.
_LABEL_FIRST = ("agent", "mode", "tag")
_LABEL_SETTINGS = 4  # at most this many settings in a label, then "+N more"
# Grid points for a group's mean when its seeds' x values, together, are more than this.
_GRID_POINTS = 500
# A seed whose curve ends before its group's by more than this fraction of the x range stopped
# early (an aborted run), unless its own points are further apart (few evaluations).
_STOPS_EARLY = 0.05
# The seed and start time in a run's name (fnrl.logging.run_id), which the seeds of a group share
# the rest of; an older name has no seed.
_RUN_SEED_AND_STAMP = re.compile(r"(_seed\d+)?_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(-\d+)?$")


class Curve(NamedTuple):
    """One curve of a run: a value at each of N points, ordered by step."""

    steps: np.ndarray  # [N] int64, agent steps summed over envs
    frames: np.ndarray  # [N] int64, agent steps × frame skip
    mean: np.ndarray  # [N] float64
    std: np.ndarray | None  # [N] float64, over an evaluation's games; None for training
    episodes: np.ndarray | None  # [N] int64, games per evaluation; None for training


class RunCurves(NamedTuple):
    """What :func:`read_curves` reads from one run directory."""

    run_dir: Path
    config: dict[str, Any]  # config.json
    mode: str  # "local", "towered" or "impala", from the fields config.json holds
    train: Curve | None  # None without a finished training game
    eval: Curve | None  # None without an evaluation


class Series(NamedTuple):
    """One line of a panel: a run, or the mean of a group's seeds, with its band."""

    label: str  # the legend's, with the seed count
    runs: tuple[Path, ...]  # the run directories drawn, ordered by seed
    x: np.ndarray  # [N] float64
    y: np.ndarray  # [N] float64
    low: np.ndarray | None  # [N] float64, the band's lower edge; None: no band
    high: np.ndarray | None  # [N] float64, its upper edge
    band: str | None  # what the band is: "min–max over seeds" or "± std over games"
    stops: tuple[tuple[Path, float], ...] = ()  # (run, its last x) per seed that stops early


class Plot(NamedTuple):
    """A figure of learning curves and the series drawn in it."""

    figure: Figure
    train: tuple[Series, ...]  # the training panel's, empty without one
    eval: tuple[Series, ...]  # the evaluation panel's, empty without one
    warnings: tuple[str, ...] = ()  # one per seed that several runs of a group share


# fnrl.logging, which names a run's files and defines its "recent return", imports tensorboardX
# (seconds): it is imported where needed, so that the command's argument errors are quick.


def recent_return_curve(returns: Sequence[float], count: int | None = None) -> np.ndarray:
    """The running "recent return": after each game, the mean of the last 100 games' returns.

    Before the 100th game, the mean of all games so far, as the run's summaries report it.

    Args:
        returns: [N] the returns of a run's games, in order.
        count: games averaged; None for ``fnrl.logging.RECENT_EPISODES`` (100), the library's
            recent return.

    Returns:
        [N] float64 means.
    """
    if count is None:
        from fnrl.logging import RECENT_EPISODES

        count = RECENT_EPISODES
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    returns = np.asarray(returns, np.float64)
    total = np.concatenate([[0.0], np.cumsum(returns)])
    end = np.arange(1, len(returns) + 1)
    start = np.maximum(end - count, 0)
    return (total[end] - total[start]) / (end - start)


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{run_dir} is not a run directory: cannot read {path.name}: {e}") from e
    if not isinstance(config, dict) or not isinstance(config.get("env_id"), str):
        raise ValueError(f"{run_dir} is not a run directory: {path.name} holds no env_id")
    return config


def _read_csv(path: Path, columns: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The columns of a run's CSV file as float64 arrays, rows in the order of their ``step``
    (ties in file order); None if missing or without rows."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # a row cut short: the run was killed while writing it
    if not lines:
        return None
    header = lines[0].split(",")
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: header {lines[0]!r} lacks {', '.join(missing)}")
    rows = [line.split(",") for line in lines[1:] if line]
    if not rows:
        return None
    try:
        table = np.array(rows, np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: a row that is not {len(header)} numbers: {e}") from e
    table = table[np.argsort(table[:, header.index("step")], kind="stable")]
    return {name: table[:, header.index(name)] for name in columns}


def _curve(
    table: dict[str, np.ndarray],
    mean: np.ndarray,
    std: np.ndarray | None = None,
    episodes: np.ndarray | None = None,
) -> Curve:
    """The curve of ``mean`` (one value per row of ``table``) at the table's steps and frames."""
    steps, frames = (table[name].astype(np.int64) for name in ("step", "frames"))
    return Curve(steps=steps, frames=frames, mean=mean, std=std, episodes=episodes)


def read_curves(run_dir: str | Path) -> RunCurves:
    """The training and evaluation curves of one run, from its ``episodes.csv`` and ``eval.csv``.

    The training curve has a point per finished game, at the step it ended: the mean return of
    the last ``RECENT_EPISODES`` games (:func:`recent_return_curve`). The evaluation curve has a
    point per evaluation: the mean and std of its games' returns. A missing file, or one with only
    its header, gives None.

    Raises:
        ValueError: ``run_dir`` holds no readable ``config.json``, or a CSV does not parse.
    """
    from fnrl.logging import EPISODES_COLUMNS, EPISODES_CSV

    run_dir = Path(run_dir).expanduser()
    config = _read_config(run_dir)
    train = None
    episodes = _read_csv(run_dir / EPISODES_CSV, EPISODES_COLUMNS)
    if episodes is not None:
        train = _curve(episodes, recent_return_curve(episodes["return"]))
    return RunCurves(run_dir, config, config_mode(config), train, read_evaluations(run_dir))


def read_evaluations(run_dir: str | Path) -> Curve | None:
    """The evaluations of a run during training, from its ``eval.csv``: a point per evaluation,
    the mean and std of its games' returns; None without the file or a row in it.

    Raises:
        ValueError: the file does not parse.
    """
    from fnrl.logging import EVAL_COLUMNS, EVAL_CSV

    evals = _read_csv(Path(run_dir).expanduser() / EVAL_CSV, EVAL_COLUMNS)
    if evals is None:
        return None
    return _curve(evals, evals["mean"], evals["std"], evals["episodes"].astype(np.int64))


def _shown(value: Any) -> str:
    return value if isinstance(value, str) and value else json.dumps(value)


def _settings(run: RunCurves) -> dict[str, Any]:
    """What a run learns with: its mode and config.json, less its seed and the fields that do
    not change what it learns."""
    return {"mode": run.mode, **{k: v for k, v in run.config.items() if k not in _NOT_SETTINGS}}


def _group_key(run: RunCurves) -> str:
    return json.dumps(_settings(run), sort_keys=True, default=str)


def _group_labels(
    groups: Sequence[Sequence[RunCurves]], label_by: Sequence[str] | None = None
) -> list[str]:
    """Each group's settings that differ between groups (or those of ``label_by``); the run
    name for a single group."""
    if len(groups) == 1:
        names = {_RUN_SEED_AND_STAMP.sub("", run.run_dir.name) for run in groups[0]}
        first = groups[0][0]
        name = names.pop() if len(names) == 1 and len(groups[0]) > 1 else first.run_dir.name
        return [f"{first.config['env_id']}/{name}"]
    configs = [_settings(group[0]) for group in groups]
    if label_by:
        shown = [{**group[0].config, **c} for group, c in zip(groups, configs, strict=True)]
        return [", ".join(f"{k}={_shown(c.get(k))}" for k in label_by) for c in shown]
    keys = set().union(*configs)
    differing = sorted(k for k in keys if len({_shown(c.get(k)) for c in configs}) > 1)
    # Settings only some groups have (another agent's fields) follow from one all of them have.
    shared = [k for k in differing if all(k in c for c in configs)] or differing
    shared.sort(key=lambda k: _LABEL_FIRST.index(k) if k in _LABEL_FIRST else len(_LABEL_FIRST))
    labels = []
    for config in configs:
        parts = [f"{k}={_shown(config[k])}" for k in shared if k in config]
        if len(parts) > _LABEL_SETTINGS:
            parts = [*parts[:_LABEL_SETTINGS], f"+{len(parts) - _LABEL_SETTINGS} more"]
        labels.append(", ".join(parts))
    return labels


def _steps_reached(run: RunCurves) -> int:
    return max((int(c.steps[-1]) for c in (run.train, run.eval) if c is not None), default=-1)


def _distinct_seeds(group: Sequence[RunCurves]) -> tuple[list[RunCurves], list[str]]:
    """A group's runs, one per seed (the one that reached the most steps; the first given of
    those that tie) ordered by seed, and a warning for each seed that several runs have."""
    by_seed: dict[str, list[RunCurves]] = {}
    for run in group:
        # A config.json without a seed (none does today) cannot share one.
        seed = json.dumps(run.config["seed"]) if "seed" in run.config else str(run.run_dir)
        by_seed.setdefault(seed, []).append(run)
    kept, warnings = [], []
    for seed, runs in by_seed.items():
        drawn = max(runs, key=_steps_reached)
        kept.append(drawn)
        if len(runs) > 1:
            others = ", ".join(
                f"{run.run_dir} ({_steps_reached(run)} steps)" for run in runs if run is not drawn
            )
            warnings.append(
                f"{len(runs)} runs have seed {seed} and the same settings, counted as one seed: "
                f"drawing {drawn.run_dir} ({_steps_reached(drawn)} steps), not {others}"
            )
    return sorted(kept, key=lambda run: str(run.config.get("seed"))), warnings


def _last_per_x(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Games ending at the same step: the curve's value after the last of them.
    keep = np.append(x[1:] != x[:-1], True)
    return x[keep], y[keep]


class SeedMean(NamedTuple):
    """Seeds' curves averaged on a common x grid, as :func:`mean_over_seeds` returns them."""

    x: np.ndarray  # [G] float64, the grid
    mean: np.ndarray  # [G] float64, the mean over the seeds present at each x
    low: np.ndarray  # [G] float64, their min
    high: np.ndarray  # [G] float64, their max
    seeds: np.ndarray  # [G] int64, how many seeds are present at each x
    stops: tuple[tuple[int, float], ...]  # (index, last x) of each seed that stops early


def mean_over_seeds(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> SeedMean:
    """The mean, min and max over seeds of curves, interpolated onto a common x grid.

    A seed stops early when its curve ends before the last seed's by more than 5% of the x
    range and by more than the median gap between its own points (seeds whose points fall at
    other steps than the others' end apart by less): an aborted run. It is averaged up to its
    last x and left out past it, so that it does not cut its group's curve short. The grid
    runs from the latest first x to the earliest last x of the seeds that do not stop early:
    the seeds' own x values in it, or 500 evenly spaced points when they are more.

    Args:
        curves: per seed, its x [N_i] (non-decreasing) and y [N_i].

    Returns:
        The grid [G] and, on it, the mean, min and max over the seeds present at each x, their
        count, and the seeds that stop early.

    Raises:
        ValueError: the seeds that do not stop early share no range of x.
    """
    curves = [_last_per_x(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in curves]
    ends = np.array([x[-1] for x, _ in curves])
    span = ends.max() - min(x[0] for x, _ in curves)
    stops = []
    for i, (x, _) in enumerate(curves):
        gap = np.median(np.diff(x)) if len(x) > 1 else 0.0
        if ends.max() - x[-1] > max(_STOPS_EARLY * span, gap):
            stops.append((i, float(x[-1])))
    stopped = [i for i, _ in stops]
    low, high = max(x[0] for x, _ in curves), np.delete(ends, stopped).min()
    if low > high:
        raise ValueError(
            f"the seeds share no range of x: one ends at {high:g}, one starts at {low:g}"
        )
    grid = np.unique(np.concatenate([x[(x >= low) & (x <= high)] for x, _ in curves]))
    if len(grid) > _GRID_POINTS:
        grid = np.linspace(low, high, _GRID_POINTS)
    values = np.stack([np.interp(grid, x, y) for x, y in curves])  # [S, G]
    present = grid <= ends[:, None]  # [S, G]; all but the seeds that stop early, everywhere
    count = present.sum(0)
    return SeedMean(
        x=grid,
        mean=np.where(present, values, 0.0).sum(0) / count,
        low=np.where(present, values, np.inf).min(0),
        high=np.where(present, values, -np.inf).max(0),
        seeds=count,
        stops=tuple(stops),
    )


def _series(label: str, runs: Sequence[RunCurves], kind: str, x: str) -> Series | None:
    drawn = [(run, getattr(run, kind)) for run in runs if getattr(run, kind) is not None]
    if not drawn:
        return None
    seeds = "seed" if len(drawn) == 1 else "seeds"
    paths = tuple(run.run_dir for run, _ in drawn)
    if len(drawn) == 1:
        label = f"{label} (n=1 seed)"
        curve = drawn[0][1]
        xs, y = getattr(curve, x).astype(np.float64), curve.mean
        if curve.std is None:
            return Series(label, paths, xs, y, None, None, None)
        return Series(label, paths, xs, y, y - curve.std, y + curve.std, "± std over games")
    mean = mean_over_seeds([(getattr(c, x), c.mean) for _, c in drawn])
    stops = tuple((paths[i], end) for i, end in mean.stops)
    note = f", {_stops_note(stops, len(drawn), x)}" if stops else ""
    label = f"{label} (n={len(drawn)} {seeds}{note})"
    band = "min–max over seeds"
    return Series(label, paths, mean.x, mean.mean, mean.low, mean.high, band, stops)


def _stops_note(stops: Sequence[tuple[Path, float]], seeds: int, x: str) -> str:
    """``1 of 3 seeds stops at 120k steps``."""
    from matplotlib.ticker import EngFormatter

    where = ", ".join(EngFormatter(sep="")(float(f"{end:.3g}")) for _, end in stops)  # 1.2M
    verb = "stops" if len(stops) == 1 else "stop"
    return f"{len(stops)} of {seeds} seeds {verb} at {where} {x}"


def _legend_title(series: Sequence[Series]) -> str | None:
    bands = sorted({s.band for s in series if s.band is not None})
    return f"band: {' / '.join(bands)}" if bands else None


def _draw_series(ax: Any, s: Series, color: str, *, kind: str, x: str, one_group: bool) -> None:
    seeds = f"n={len(s.runs)} seed{'s' if len(s.runs) > 1 else ''}"
    label = s.label
    if one_group:  # the group's name is the figure's title
        label = f"mean of {seeds}" if len(s.runs) > 1 else seeds
        if s.stops:
            label += f" ({_stops_note(s.stops, len(s.runs), x)})"
    style = {"marker": "o", "markersize": 3} if kind == "eval" else {}
    ax.plot(s.x, s.y, color=color, label=label, lw=1.5, **style)
    for _, end in s.stops:  # a bar across the curve where a seed stops; the legend says so
        if s.x[0] <= end <= s.x[-1]:
            y = np.interp(end, s.x, s.y)
            ax.plot([end], [y], color=color, marker="|", markersize=14, mew=2, label="_stop")
    if s.band is not None:
        band = f"band: {s.band}" if one_group else None
        ax.fill_between(s.x, s.low, s.high, color=color, alpha=0.2, lw=0, label=band)


def plot_curves(
    runs: Sequence[RunCurves], *, x: str = "frames", label_by: Sequence[str] | None = None
) -> Plot:
    """A figure of the learning curves of runs of one env, grouped by settings; see the module.

    Args:
        runs: the curves of each run, as :func:`read_curves` returns them.
        x: ``"frames"`` (agent steps × frame skip) or ``"steps"`` (agent steps summed over
            envs).
        label_by: the settings that name each group in the legend (``("agent",)``); None
            names them by every setting that differs between groups.

    Returns:
        The figure, per panel the series drawn, and a warning per seed that several runs of a
        group share (they count once).

    Raises:
        ValueError: runs of several envs, no curve to draw, a bad ``x``, or the seeds of a group
            that share no range of x.
    """
    if x not in X_CHOICES:
        raise ValueError(f"x must be one of {', '.join(X_CHOICES)}, got {x!r}")
    envs = sorted({run.config["env_id"] for run in runs})
    if len(envs) != 1:
        raise ValueError(f"runs of different envs cannot share a plot: {', '.join(envs)}")
    grouped: dict[str, list[RunCurves]] = {}
    for run in runs:
        grouped.setdefault(_group_key(run), []).append(run)
    groups, warnings = [], []
    for group in grouped.values():
        runs_of_seeds, duplicates = _distinct_seeds(group)
        groups.append(runs_of_seeds)
        warnings += duplicates
    labels = _group_labels(groups, label_by)
    panels = {}
    for kind in ("train", "eval"):
        pairs = enumerate(zip(labels, groups, strict=True))
        series = [(i, _series(label, group, kind, x)) for i, (label, group) in pairs]
        if any(s is not None for _, s in series):
            panels[kind] = [(i, s) for i, s in series if s is not None]
    if not panels:
        names = ", ".join(str(run.run_dir) for run in runs)
        from fnrl.logging import EPISODES_CSV, EVAL_CSV

        raise ValueError(f"nothing to plot: no row in {EPISODES_CSV} or {EVAL_CSV} of {names}")
    one_group = len(groups) == 1
    figure, axes = new_figure(len(panels))
    titles = []
    for ax, (kind, series) in zip(axes, panels.items(), strict=True):
        for color, s in series:
            _draw_series(ax, s, f"C{color % 10}", kind=kind, x=x, one_group=one_group)
        if kind == "train":
            style_axes(ax, x=x, ylabel=train_label(), title="training")
        else:
            drawn = [run for group in groups for run in group if run.eval is not None]
            games = [k for run in drawn for k in run.eval.episodes]
            style_axes(ax, x=x, ylabel=eval_label(games), title="evaluation")
        titles.append(None if one_group else _legend_title([s for _, s in series]))
    legends_below(figure, titles)
    # One group: its name is the title (with the env id) rather than a long legend entry.
    figure.suptitle(labels[0] if one_group else envs[0])
    return Plot(
        figure,
        tuple(s for _, s in panels.get("train", [])),
        tuple(s for _, s in panels.get("eval", [])),
        tuple(warnings),
    )


def plot_runs(
    run_dirs: Sequence[str | Path],
    out_path: str | Path | None,
    *,
    x: str = "frames",
    label_by: Sequence[str] | None = None,
) -> Plot:
    """Reads runs' curves, draws them (:func:`plot_curves`) and writes the figure as a PNG.

    Args:
        run_dirs: run directories of one env.
        out_path: the PNG to write; None writes nothing.
        x: ``"frames"`` or ``"steps"``, the x axis.
        label_by: the settings naming the groups (see :func:`plot_curves`).

    Returns:
        The figure, the series drawn and the warnings (see :func:`plot_curves`).

    Raises:
        ValueError: a path that is no run directory, a CSV that does not parse, or see
            :func:`plot_curves`.
        OSError: the PNG cannot be written.
    """
    plot = plot_curves([read_curves(run_dir) for run_dir in run_dirs], x=x, label_by=label_by)
    if out_path is not None:
        plot.figure.savefig(out_path, dpi=100)
    return plot


def write_run_plot(run_dir: str | Path, *, x: str = "frames") -> Path | None:
    """Writes ``run_dir/learning_curves.png``, the run's curves; None when it has none yet.

    Called at the end of a training run; takes about half a second (most of it importing
    matplotlib).

    Raises:
        ValueError: ``run_dir`` is no run directory or a CSV does not parse.
        OSError: the PNG cannot be written.
    """
    run = read_curves(run_dir)
    if run.train is None and run.eval is None:
        return None
    path = run.run_dir / PLOT_NAME
    plot_curves([run], x=x).figure.savefig(path, dpi=100)
    return path


def make_parser() -> argparse.ArgumentParser:
    """The ``fnrl.plot`` argument parser."""
    parser = CommandLineParser(
        prog=PROG,
        description="Plot the learning curves of runs (runs differing only by seed are grouped).",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories of one env")
    parser.add_argument(
        "--x",
        choices=X_CHOICES,
        default="frames",
        help="x axis: frames (agent steps × frame skip, default) or agent steps",
    )
    parser.add_argument(
        "--label-by",
        nargs="+",
        metavar="SETTING",
        help="settings of config.json, or mode, that name the groups in the legend, e.g. agent "
        "(default: every setting that differs between groups)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"the PNG to write (default: RUN/{PLOT_NAME} for one run, else ./{PLOT_NAME})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: plots the runs and prints where the PNG is."""
    parser = make_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run_dirs = [Path(run).expanduser() for run in args.runs]
    envs: dict[str, Path] = {}
    for run_dir in run_dirs:
        try:
            envs.setdefault(_read_config(run_dir)["env_id"], run_dir)
        except ValueError as e:
            parser.error(str(e))
    if len(envs) > 1:
        shown = ", ".join(f"{env} ({path})" for env, path in envs.items())
        parser.error(f"runs of different envs cannot share a plot: {shown}")
    if args.out is not None:
        out = Path(args.out).expanduser()
    else:
        out = run_dirs[0] / PLOT_NAME if len(run_dirs) == 1 else Path(PLOT_NAME)
    try:
        plot = plot_runs(run_dirs, out, x=args.x, label_by=args.label_by)
    except (ValueError, OSError) as e:
        print(f"fnrl.plot: error: {e}", file=sys.stderr)
        return 1
    for warning in plot.warnings:
        print(f"fnrl.plot: warning: {warning}", file=sys.stderr)
    print(f"learning curves written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
