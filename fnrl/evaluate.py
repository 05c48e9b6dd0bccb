"""Command line: ``python -m fnrl.evaluate RUN_DIR [--checkpoint STEP | --all-checkpoints]``.

Plays a saved policy on fresh envs and reports its returns (adept's ``evaluation`` script).
The envs are built from the run's ``config.json`` as in training (same preprocessing, time
limit and frame stack) but seeded ``seed + 2,000,000 + i`` by default, so no episode repeats one
seen in training; every checkpoint is evaluated on the same seeds. Actions are the policy's
argmax (adept's deterministic evaluation; ``--greedy false`` samples), batch norm uses its
running statistics, and returns are whole games in real, unclipped game score.

``--episodes N`` games are split over ``--nb-env M`` envs before playing (each env plays its
share from its reset), so short games are not over-represented.

Writes, under ``RUN_DIR/eval/`` (or ``--out-dir``):

* ``results.json``: per checkpoint the steps, frames, and mean / std / min / max of the return
  and the length, with every game's return; the best checkpoint by mean return; and the
  checkpoints skipped, with why;
* ``{checkpoint}.csv`` per checkpoint: one row per game (``episode,return,length``);
* with ``--all-checkpoints``: ``eval.csv`` (one row per checkpoint) and ``learning_curve.png``,
  the mean return of each checkpoint (± std, and min / max) against frames, beside the run's
  evaluations during training (its own ``eval.csv``) when it has them.

With ``--all-checkpoints``, a checkpoint that cannot be read (corrupt, still being copied,
pruned by the live run meanwhile) is skipped with one warning line naming it and why; the
command fails only if none can be read.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fnrl.checkpoint import (
    CheckpointError,
    find_checkpoint,
    list_checkpoints,
    load_params,
    read_meta,
)
from fnrl.cli import (
    CommandLineParser,
    add_episodes_flag,
    add_greedy_flag,
    add_import_flag,
    add_seed_flag,
    import_flag_modules,
    load_run_config,
    setting_type,
    use_compilation_cache,
)
from fnrl.figures import eval_label, games_label, legends_below, new_figure, style_axes
from fnrl.plot import Curve, read_evaluations
from fnrl.settings import ConfigError

PROG = "python -m fnrl.evaluate"


def _stats(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, np.float64)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def evaluate_checkpoints(
    run_dir: str | Path,
    checkpoints: Sequence[Path],
    *,
    episodes: int,
    nb_env: int,
    greedy: bool = True,
    seed: int | None = None,
    on_unreadable: Callable[[Path, CheckpointError], None] | None = None,
) -> list[dict[str, Any]]:
    """Plays each checkpoint for ``episodes`` games; see the module docstring.

    Args:
        run_dir: the run directory (its ``config.json`` builds the envs and the network).
        checkpoints: checkpoint directories of that run.
        episodes: games per checkpoint.
        nb_env: envs played in parallel.
        greedy: argmax actions (adept); otherwise sampled.
        seed: first env seed; None for the run's seed + 2,000,000.
        on_unreadable: if given, a checkpoint that cannot be read (corrupt, still being
            copied, removed meanwhile, of another network) is skipped and passed to it with
            the error; otherwise the error is raised.

    Returns:
        One result dict per checkpoint evaluated (the entries of ``results.json``).

    Raises:
        CheckpointError: a checkpoint is corrupt or does not fit the run's network (without
            ``on_unreadable``).
        ValueError: bad arguments or config.
    """
    import jax

    from fnrl.config import NetworkSettings

    # The run shell imports the envs and tensorboardX (seconds): here, so that -h stays fast.
    from fnrl.parallel.evaluation import EVALUATE_SEED_OFFSET, make_eval_policy, run_episodes
    from fnrl.parallel.local import make_agent, make_network, make_training_env

    if episodes < 1 or nb_env < 1:
        raise ValueError(f"--episodes and --nb-env must be at least 1, got {episodes}, {nb_env}")
    config = load_run_config(run_dir)
    seed = config.seed + EVALUATE_SEED_OFFSET if seed is None else seed
    results = []
    policy = None
    for path in checkpoints:
        env = make_training_env(config, nb_env, seed)
        try:
            if policy is None:
                agent = make_agent(config, env.spec)
                network = make_network(config.section(NetworkSettings), env.spec)
                target = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
                policy = jax.jit(make_eval_policy(network, greedy=greedy))
                initial_carry = network.initial_carry(nb_env)
            try:
                params = load_params(path, target)
                meta = read_meta(path)
            except CheckpointError as e:
                if on_unreadable is None:
                    raise
                on_unreadable(path, e)
                continue
            games = run_episodes(
                env, policy, params, jax.random.PRNGKey(seed), initial_carry, episodes
            )
        finally:
            env.close()
        env_steps = int(meta.get("env_steps", 0))
        returns = [g.returns for g in games]
        lengths = [g.length for g in games]
        results.append(
            {
                "checkpoint": path.name,
                "path": str(path),
                "env_steps": env_steps,
                "frames": int(meta.get("frames", env_steps * env.frames_per_step)),
                "episodes": len(games),
                "return": _stats(returns),
                "length": _stats(lengths),
                "returns": returns,
                "lengths": lengths,
            }
        )
    return results


def plot_learning_curve(
    results: Sequence[dict[str, Any]],
    path: Path,
    title: str,
    *,
    greedy: bool = True,
    training: Curve | None = None,
) -> Any:
    """Writes a PNG of the mean return of each checkpoint against frames, beside the run's
    evaluations during training.

    A checkpoint is a point (± std over its games as a bar, its worst and best game as
    triangles), joined to the next by a dashed line: a run keeps few checkpoints (a
    short one, 2), which a line alone would pass for a curve. Its axes are labelled as
    ``python -m fnrl.plot`` labels a run's evaluation curve.

    Args:
        results: per checkpoint, its ``frames``, ``episodes`` and ``return`` statistics
            (``mean``, ``std``, ``min``, ``max``), as :func:`evaluate_checkpoints` returns them.
        path: the PNG to write.
        title: the figure's, the env id.
        greedy: whether the checkpoints played greedily (the y label says so).
        training: the run's evaluations during training (:func:`fnrl.plot.read_evaluations`),
            drawn as a line; None draws the checkpoints alone.

    Returns:
        The matplotlib ``Figure`` written.
    """
    results = sorted(results, key=lambda r: r["frames"])
    frames = np.array([r["frames"] for r in results])
    mean = np.array([r["return"]["mean"] for r in results])
    std = np.array([r["return"]["std"] for r in results])
    count = len(results)
    checkpoints = f"{count} checkpoint{'s' if count > 1 else ''}"
    figure, (axes,) = new_figure(1)
    each = f"each of {checkpoints}" if count > 1 else "1 checkpoint"
    label = f"mean return of {each} (± std over games)"
    points = axes.errorbar(frames, mean, std, fmt="o--", color="C0", markersize=7, lw=1, capsize=5)
    points.lines[0].set_label(label)  # the line's, not the bars': first in the legend
    axes.plot(frames, [r["return"]["min"] for r in results], "v", color="gray", label="min game")
    axes.plot(frames, [r["return"]["max"] for r in results], "^", color="gray", label="max game")
    if training is not None:
        label = f"evaluations during training ({games_label(training.episodes)})"
        axes.plot(training.frames, training.mean, "o-", color="C1", markersize=3, label=label)
    ylabel = eval_label([r["episodes"] for r in results], greedy=greedy)
    style_axes(axes, x="frames", ylabel=ylabel, title=f"{title}: {checkpoints}")
    legends_below(figure)
    figure.savefig(path, dpi=100)
    return figure


def _training_evaluations(run_dir: Path) -> Curve | None:
    """The run's evaluations during training (its ``eval.csv``), for the learning curve; None
    without, or with a warning line when the file does not parse: the checkpoints are the
    command's results, worth a curve without them."""
    try:
        return read_evaluations(run_dir)
    except ValueError as e:
        print(f"fnrl.evaluate: warning: leaving the run's evaluations out: {e}", file=sys.stderr)
        return None


def _write_outputs(
    out_dir: Path, results: list[dict[str, Any]], settings: dict[str, Any], curve: bool
) -> None:
    """Writes the files of the module docstring.

    Raises:
        OSError: one cannot be written (a full disk), naming it and the OS error.
    """
    training = _training_evaluations(Path(settings["run_dir"])) if curve else None
    path = out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for result in results:
            path = out_dir / f"{result['checkpoint']}.csv"
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["episode", "return", "length"])
                for i, (r, n) in enumerate(zip(result["returns"], result["lengths"], strict=True)):
                    writer.writerow([i, r, n])
        best = max(results, key=lambda r: r["return"]["mean"])
        summary = {**settings, "checkpoints": results, "best": best["checkpoint"]}
        path = out_dir / "results.json"
        path.write_text(json.dumps(summary, indent=4))
        if curve:
            path = out_dir / "eval.csv"
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["checkpoint", "env_steps", "frames", "mean", "std", "min", "max"])
                for r in results:
                    stats = r["return"]
                    writer.writerow(
                        [r["checkpoint"], r["env_steps"], r["frames"], *(stats[k] for k in stats)]
                    )
            path = out_dir / "learning_curve.png"
            plot_learning_curve(
                results, path, settings["env_id"], greedy=settings["greedy"], training=training
            )
    except OSError as e:
        reason = f"[Errno {e.errno}] {e.strerror}" if e.errno else str(e)  # not the file again
        raise OSError(f"cannot write {path}: {reason}") from e


def make_parser() -> argparse.ArgumentParser:
    """The ``fnrl.evaluate`` argument parser."""
    parser = CommandLineParser(
        prog=PROG,
        description="Play a saved policy on fresh envs and report its returns.",
    )
    parser.add_argument("run_dir", help="the run directory ({log_dir}/{env_id}/{run_id})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint", help="a step count, a checkpoint name (step_N) or path; default: latest"
    )
    which.add_argument(
        "--all-checkpoints", action="store_true", help="evaluate every saved checkpoint"
    )
    add_episodes_flag(parser, 30, "games per checkpoint (adept 30)")
    parser.add_argument(
        "--nb-env", type=setting_type(int, at_least=1), default=10, help="envs played in parallel"
    )
    add_greedy_flag(parser)
    add_seed_flag(parser, "first env seed (default: the run's + 2,000,000)")
    parser.add_argument("--out-dir", default=None, help="where to write (default: RUN_DIR/eval)")
    add_import_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: evaluates, prints a line per checkpoint, writes the results."""
    parser = make_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import_flag_modules(parser, args)
    try:
        # The run shell imports the envs and tensorboardX (seconds): here, so -h stays fast.
        from fnrl.parallel.evaluation import EVALUATE_SEED_OFFSET

        run_dir = Path(args.run_dir)
        config = load_run_config(run_dir)
        use_compilation_cache(config.compilation_cache)
        seed = config.seed + EVALUATE_SEED_OFFSET if args.seed is None else args.seed
        if args.all_checkpoints:
            checkpoints = list_checkpoints(run_dir / "checkpoints")
            if not checkpoints:
                raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'}")
        else:
            checkpoints = [find_checkpoint(run_dir, args.checkpoint)]
        skipped: dict[str, str] = {}

        def skip(path: Path, error: CheckpointError) -> None:
            print(f"fnrl.evaluate: warning: skipping {path.name}: {error}", file=sys.stderr)
            skipped[path.name] = str(error)

        results = evaluate_checkpoints(
            run_dir,
            checkpoints,
            episodes=args.episodes,
            nb_env=args.nb_env,
            greedy=args.greedy,
            seed=seed,
            # One checkpoint being written, pruned or corrupt leaves the others worth a curve.
            on_unreadable=skip if args.all_checkpoints else None,
        )
        if not results:
            raise CheckpointError(
                f"none of the {len(checkpoints)} checkpoints in {run_dir / 'checkpoints'} "
                "is readable"
            )
        for r in results:
            ret, length = r["return"], r["length"]
            print(
                f"{r['checkpoint']} ({r['env_steps']} steps, {r['frames']} frames): return "
                f"mean {ret['mean']:.2f} std {ret['std']:.2f} min {ret['min']:.2f} max "
                f"{ret['max']:.2f}; length mean {length['mean']:.1f} min {length['min']:.0f} "
                f"max {length['max']:.0f}; {r['episodes']} {'greedy' if args.greedy else 'sampled'}"
                " episodes",
                flush=True,
            )
        out_dir = Path(args.out_dir) if args.out_dir else run_dir / "eval"
        settings = {
            "run_dir": str(run_dir),
            "env_id": config.env_id,
            "greedy": args.greedy,
            "episodes": args.episodes,
            "nb_env": args.nb_env,
            "seed": seed,
            "skipped": skipped,
        }
        _write_outputs(out_dir, results, settings, curve=args.all_checkpoints)
        print(f"results written to {out_dir}", flush=True)
    except ConfigError as e:
        print(f"fnrl.evaluate: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as e:
        print(f"fnrl.evaluate: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fnrl.evaluate: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
