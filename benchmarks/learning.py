"""Learning results: agent × env × seeds, scored with adept's protocol, as a table and plots.

Each experiment of a preset (an agent on an env with a frame budget) trains once per seed with
``python -m fnrl.train``, each run in its own process and directory. While it trains, an
evaluation of ``--eval-episodes`` (30) greedy games runs every ``eval_every`` frames (the run's
``eval.csv``). A run's score is adept's: **the best 30-game average over those evaluations**
(adept evaluated a checkpoint every 1M frames and took the best). The table gives, per
experiment, the mean and the spread (std, min and max) of the score over seeds, the last
evaluation's mean, the minutes per run, and the published number it compares against, named
with its source and the budget it was reached at.

Presets:

* ``cpu``: CartPole-v1, Acrobot-v1 and MinAtar/Breakout-v1, A2C (``ActorCritic``) and PPO, 3
  seeds, each env's own defaults (``python -m fnrl.train --env-id ID -h``); about 45 minutes on
  one core of a 2-core CPU. The README's table comes from it.
* ``atari10m`` and ``atari50m``: adept's six Atari games (BeamRider, Breakout, Pong, Qbert,
  Seaquest, SpaceInvaders) with adept's network for its table (``ResNet18V2`` trunk and
  ``LSTM`` body, A2C, adept's Atari defaults: 32 envs × 20 steps), 10M and 50M frames,
  evaluated every 1M frames; for a machine with an accelerator (a 50M-frame run is days on a
  CPU).

Frames count the Atari frame skip (4 frames per agent step); on the other envs a frame is a
step. Training in ``local`` mode is deterministic, so the same preset, seeds and machine give
the same table; across machines floating-point rounding moves curves within the seed spread.

Output, under ``--out``: ``runs/`` (the run directories, one per experiment and seed),
``results.json`` (every run's evaluations and scores, and the table), ``results.md`` (the table
as Markdown), and ``<env>.png`` per env (the learning curves: mean over seeds with a band from
the lowest to the highest seed). A run that already finished is read, not retrained; one that
was interrupted resumes from its last checkpoint; so an interrupted benchmark continues where it
stopped when run again with the same ``--out``. A run that fails is reported with its error and
the benchmark exits with status 1 after writing the rest.

    pip install -e ".[minatar]"
    python benchmarks/learning.py --preset cpu --out learning                  # the README table
    python benchmarks/learning.py --preset cpu --seeds 1 --frames 20000 --out /tmp/quick
    python benchmarks/learning.py --preset atari50m --out adept_table          # adept's table
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fnrl.config import TrainConfig
from fnrl.envs import atari_task_id
from fnrl.logging import TRAIN_LOG
from fnrl.plot import plot_runs, read_curves

EVAL_EPISODES = 30  # adept's protocol: 30 games per evaluation
END_LINE = "END: "  # how the line a run writes to train_log.txt when it ends starts


class Reference(NamedTuple):
    """A published result to compare with: its value, the budget it was reached at, its source."""

    value: float
    frames: int
    source: str


class Experiment(NamedTuple):
    """One agent on one env with a budget; ``flags`` are more ``fnrl.train`` flags."""

    env_id: str
    agent: str
    frames: int  # training budget, in frames (agent steps × frame skip)
    eval_every: int  # frames between two evaluations
    flags: tuple[str, ...] = ()
    reference: Reference | None = None


class Preset(NamedTuple):
    """Experiments, each trained with seeds ``0 .. seeds - 1``."""

    experiments: tuple[Experiment, ...]
    seeds: int


class RunResult(NamedTuple):
    """One seed of an experiment: its evaluations and score, or the error that stopped it."""

    experiment: Experiment
    seed: int
    run_dir: str | None
    eval_frames: list[int]
    eval_means: list[float]
    seconds: float  # training wall time, summed over the run's invocations
    error: str | None = None

    @property
    def score(self) -> float | None:
        """adept's score: the best evaluation mean (None without an evaluation)."""
        return max(self.eval_means) if self.eval_means else None

    @property
    def last(self) -> float | None:
        """The mean of the last evaluation (None without one)."""
        return self.eval_means[-1] if self.eval_means else None


ZOO = "RL Baselines3 Zoo benchmark.md, one run, final greedy evaluation"
MINATAR = "MinAtar README (Young & Tian 2019): a random policy, 1000 games"
ADEPT = "adeptRL README, A2C ResNet18V2 + LSTM, best 30-game average every 1M frames"
ADEPT_TABLE = {  # adept's README: the game and its score after 50M frames
    "BeamRiderNoFrameskip-v4": 17058.0,
    "BreakoutNoFrameskip-v4": 546.0,
    "PongNoFrameskip-v4": 21.0,
    "QbertNoFrameskip-v4": 4498.0,
    "SeaquestNoFrameskip-v4": 8732.0,
    "SpaceInvadersNoFrameskip-v4": 1160.0,
}
ADEPT_FLAGS = (
    "--vision-network",
    "ResNet18V2",
    "--network-body",
    "LSTM",
    "--exact-resume",
    "false",
)


RANDOM_BREAKOUT = Reference(0.5, 0, MINATAR)  # the learning curves are published as figures only


def _atari(frames: int, references: dict[str, float] | None) -> tuple[Experiment, ...]:
    return tuple(
        Experiment(
            env_id,
            "ActorCritic",
            frames,
            1_000_000,
            ADEPT_FLAGS,
            None if references is None else Reference(references[env_id], 50_000_000, ADEPT),
        )
        for env_id in ADEPT_TABLE
    )


PRESETS = {
    "cpu": Preset(
        (
            Experiment(
                "CartPole-v1", "ActorCritic", 500_000, 25_000, (), Reference(500.0, 500_000, ZOO)
            ),
            Experiment("CartPole-v1", "PPO", 500_000, 25_000, (), Reference(500.0, 100_000, ZOO)),
            Experiment(
                "Acrobot-v1", "ActorCritic", 500_000, 25_000, (), Reference(-83.353, 500_000, ZOO)
            ),
            Experiment(
                "Acrobot-v1", "PPO", 500_000, 25_000, (), Reference(-73.506, 1_000_000, ZOO)
            ),
            Experiment("MinAtar/Breakout-v1", "ActorCritic", 500_000, 50_000, (), RANDOM_BREAKOUT),
            Experiment("MinAtar/Breakout-v1", "PPO", 500_000, 50_000, (), RANDOM_BREAKOUT),
        ),
        seeds=3,
    ),
    "atari10m": Preset(_atari(10_000_000, None), seeds=3),
    "atari50m": Preset(_atari(50_000_000, ADEPT_TABLE), seeds=3),
}


# ----------------------------------------------------------------------------------- one run
def frames_per_step(env_id: str) -> int:
    """Frames per agent step: the default Atari frame skip for Atari ids, else 1."""
    return TrainConfig.skip_rate if atari_task_id(env_id) else 1


def file_name(env_id: str) -> str:
    """``env_id`` as one file name: ``MinAtar/Breakout-v1`` -> ``MinAtar_Breakout-v1``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", env_id)


def run_root(out: Path, experiment: Experiment, seed: int) -> Path:
    """Where the run of ``experiment`` and ``seed`` writes: its own ``--log-dir``."""
    return out / "runs" / file_name(experiment.env_id) / experiment.agent / f"seed{seed}"


def find_run_dir(root: Path, env_id: str) -> Path | None:
    """The run directory under a run's ``--log-dir`` (``root/ENV_ID/NAME``), None before it."""
    dirs = sorted(path.parent for path in (root / env_id).glob("*/config.json"))
    return dirs[-1] if dirs else None


def progress(run_dir: Path) -> tuple[int, float]:
    """The agent steps a run had trained when it last ended and the seconds it trained in all
    (from the ``END`` lines its train log gets each time it ends); ``(0, 0.0)`` before."""
    try:
        lines = (run_dir / TRAIN_LOG).read_text().splitlines()
    except OSError:
        return 0, 0.0
    ends = []
    for line in lines:
        if line.startswith(END_LINE):
            words = line.split()[1:]
            ends.append(dict(zip(words[0::2], words[1::2], strict=False)))
    if not ends:
        return 0, 0.0
    return int(ends[-1]["steps"]), sum(float(end["seconds"]) for end in ends)


def read_evaluations(run_dir: Path) -> tuple[list[int], list[float]]:
    """The frames and mean returns of a run's evaluations, in order (its ``eval.csv``)."""
    curve = read_curves(run_dir).eval
    return ([], []) if curve is None else (curve.frames.tolist(), curve.mean.tolist())


def train_command(
    experiment: Experiment, seed: int, log_dir: Path, eval_episodes: int
) -> list[str]:
    """The ``fnrl.train`` command line of one seed of an experiment."""
    skip = frames_per_step(experiment.env_id)
    return [
        sys.executable,
        "-m",
        "fnrl.train",
        "local",
        "--env-id",
        experiment.env_id,
        "--agent",
        experiment.agent,
        "--seed",
        str(seed),
        "--max-train-steps",
        str(experiment.frames // skip),
        "--eval-every",
        str(experiment.eval_every // skip),
        "--eval-episodes",
        str(eval_episodes),
        "--log-dir",
        str(log_dir),
        *experiment.flags,
    ]


def run_one(experiment: Experiment, seed: int, out: Path, eval_episodes: int) -> RunResult:
    """Trains one seed (or resumes it, or reads it when finished) and reads its evaluations."""
    root = run_root(out, experiment, seed)
    run_dir = find_run_dir(root, experiment.env_id)
    budget = experiment.frames // frames_per_step(experiment.env_id)
    steps, seconds = (0, 0.0) if run_dir is None else progress(run_dir)
    if steps < budget:
        command = train_command(experiment, seed, root, eval_episodes)
        if run_dir is not None and any((run_dir / "checkpoints").glob("*")):
            command += ["--resume", str(run_dir)]
        elif root.exists():
            shutil.rmtree(root)  # started but never saved: start again
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "train_output.txt", "a") as output:
            done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
        run_dir = find_run_dir(root, experiment.env_id)
        steps, seconds = (0, 0.0) if run_dir is None else progress(run_dir)
        if done.returncode != 0 or steps < budget:
            lines = (root / "train_output.txt").read_text().strip().splitlines()
            error = lines[-1] if lines else f"exit status {done.returncode}"
            return RunResult(experiment, seed, str(run_dir), [], [], 0.0, error)
    frames, means = read_evaluations(run_dir)
    return RunResult(experiment, seed, str(run_dir), frames, means, seconds)


# ------------------------------------------------------------------------------- the table
def spread(values: Sequence[float]) -> dict[str, float]:
    """The mean, the sample std (0 for one value), the min and the max of values."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


def summarize(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per experiment (in first-seen order): scores over its seeds that have one."""
    by_experiment: dict[Experiment, list[RunResult]] = {}
    for result in results:
        by_experiment.setdefault(result.experiment, []).append(result)
    rows = []
    for experiment, runs in by_experiment.items():
        scored = [run for run in runs if run.score is not None]
        rows.append(
            {
                "env_id": experiment.env_id,
                "agent": experiment.agent,
                "frames": experiment.frames,
                "flags": list(experiment.flags),
                "seeds": len(scored),
                "failed": [run.seed for run in runs if run.error is not None],
                "score": spread([run.score for run in scored]) if scored else None,
                "last": spread([run.last for run in scored]) if scored else None,
                "minutes_per_run": statistics.fmean(run.seconds for run in runs) / 60,
                "reference": None
                if experiment.reference is None
                else experiment.reference._asdict(),
            }
        )
    return rows


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def _frames(frames: int) -> str:
    if frames >= 1_000_000:
        return f"{frames / 1e6:g}M"
    return f"{frames / 1e3:g}k" if frames >= 1000 else str(frames)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The table as Markdown: score mean ± std [min, max] over seeds, and the published number,
    its source numbered below the table."""
    sources = sorted({row["reference"]["source"] for row in rows if row["reference"]})
    lines = [
        "| env | agent | frames | seeds | best 30-game average | last evaluation | "
        "minutes / run | published |",
        "|---|---|---:|---:|---|---|---:|---|",
    ]
    for row in rows:
        score, last, ref = row["score"], row["last"], row["reference"]
        failed = f" ({len(row['failed'])} failed)" if row["failed"] else ""
        cells = [
            row["env_id"],
            row["agent"],
            _frames(row["frames"]),
            f"{row['seeds']}{failed}",
            "—"
            if score is None
            else f"{_number(score['mean'])} ± {_number(score['std'])} "
            f"[{_number(score['min'])}, {_number(score['max'])}]",
            "—" if last is None else f"{_number(last['mean'])} ± {_number(last['std'])}",
            f"{row['minutes_per_run']:.1f}",
            "—"
            if ref is None
            else f"{_number(ref['value'])} at {_frames(ref['frames'])} "
            f"[{sources.index(ref['source']) + 1}]",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"[{i}] {source}" for i, source in enumerate(sources, 1)]
    return "\n".join(lines + ([""] + notes if notes else []))


def write_plots(results: Sequence[RunResult], out: Path) -> list[Path]:
    """One learning-curve PNG per env, over every run that has a directory (seed bands)."""
    by_env: dict[str, list[str]] = {}
    for result in results:
        if result.run_dir is not None and result.error is None:
            by_env.setdefault(result.experiment.env_id, []).append(result.run_dir)
    paths = []
    for env_id, run_dirs in by_env.items():
        path = out / f"{file_name(env_id)}.png"
        plot_runs(run_dirs, path, x="frames", label_by=("agent",)).figure.clf()
        paths.append(path)
    return paths


def run_record(result: RunResult) -> dict[str, Any]:
    """One run as JSON: its experiment, seed, directory, evaluations, score and error."""
    experiment = result.experiment._asdict()
    if result.experiment.reference is not None:
        experiment["reference"] = result.experiment.reference._asdict()
    return {**result._asdict(), "experiment": experiment, "score": result.score}


# ------------------------------------------------------------------------------------ main
def select(preset: Preset, args: argparse.Namespace) -> list[Experiment]:
    """The preset's experiments kept by ``--envs``/``--agents``, with ``--frames`` applied."""
    experiments = [
        e
        for e in preset.experiments
        if (not args.envs or e.env_id in args.envs) and (not args.agents or e.agent in args.agents)
    ]
    if args.frames:
        every = max(args.frames // 10, 1)
        experiments = [e._replace(frames=args.frames, eval_every=every) for e in experiments]
    return experiments


def make_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", default="learning", help="directory of runs, tables and plots")
    parser.add_argument("--seeds", type=int, help="seeds per experiment (default: the preset's)")
    parser.add_argument("--envs", nargs="+", help="only these env ids of the preset")
    parser.add_argument("--agents", nargs="+", help="only these agents of the preset")
    parser.add_argument(
        "--frames",
        type=int,
        help="a budget for every experiment, with 10 evaluations (a quick check)",
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=EVAL_EPISODES, help="games per evaluation"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the preset, prints the table and writes the outputs; 1 if a run failed."""
    parser = make_parser()
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    experiments = select(preset, args)
    if not experiments:
        parser.error("--envs/--agents leave no experiment of the preset")
    seeds = range(args.seeds or preset.seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(e, s) for e in experiments for s in seeds]

    def one(job: tuple[Experiment, int]) -> RunResult:
        result = run_one(*job, out, args.eval_episodes)
        what = f"{result.experiment.env_id} {result.experiment.agent} seed {result.seed}"
        if result.error is not None:
            print(f"{what}: failed: {result.error}", flush=True)
        elif result.score is None:
            print(f"{what}: no evaluation", flush=True)
        else:
            best = result.eval_frames[int(np.argmax(result.eval_means))]
            print(
                f"{what}: best {result.score:.1f} at {best:,} frames, last {result.last:.1f}, "
                f"{result.seconds / 60:.1f} min",
                flush=True,
            )
        return result

    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        results = list(pool.map(one, jobs))
    rows = summarize(results)
    table = format_table(rows)
    plots = write_plots(results, out)
    stamp = datetime.date.today().isoformat()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    (out / "results.md").write_text(f"{args.preset}, {stamp}, {machine}\n\n{table}\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "preset": args.preset,
                "date": stamp,
                "machine": machine,
                "eval_episodes": args.eval_episodes,
                "rows": rows,
                "runs": [run_record(result) for result in results],
            },
            indent=2,
        )
    )
    print(f"\n{table}\n")
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, " + ", ".join(map(str, plots)))
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
