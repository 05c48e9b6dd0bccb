"""Command line: ``python -m fnrl.render RUN_DIR --episodes N --out video.mp4`` (or ``.gif``).

Records a saved policy playing (adept's ``render`` script): greedy actions (``--greedy false``
samples), batch norm with its running statistics, one env seeded apart from training.

Where the frames come from:

* **envpool tasks** (Atari, and classic control such as CartPole-v1): the training env is
  built with envpool's ``render_mode="rgb_array"`` and otherwise the same settings, so the agent
  plays the env it was trained on and the video shows the game's real RGB screen (Atari
  210x160, CartPole 600x400), one frame per agent step (at frame skip 4, the last emulator
  frame of each step). ``--agent-view`` writes instead what the agent sees: the newest 84x84
  gray frame of its observation, scaled up twice.
* **Gymnasium ids**: ``gymnasium.make(env_id, render_mode="rgb_array")``, whose observations go
  through the same conversion as in training. Envs without an ``rgb_array`` mode, or whose
  renderer is missing (e.g. pygame), end with one clear error.

A video holds, per episode, the first frame and one frame per env step (an Atari life loss adds
the step of its automatic reset); ``--max-steps K`` cuts each episode after K steps. MP4 is
H.264 (imageio-ffmpeg, the ``video`` extra: ``pip install 'fnrl[video]'``); GIF keeps the
timing but merges identical consecutive frames into one longer frame (Pillow's encoder), so a
GIF may decode to fewer frames than were written. The video appears at ``--out`` only once
complete: a render that fails leaves no partial file and an earlier video as it was.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fnrl._video import can_write_mp4, claimed, video_writer
from fnrl.checkpoint import find_checkpoint, load_params
from fnrl.cli import (
    CommandLineParser,
    add_episodes_flag,
    add_greedy_flag,
    add_import_flag,
    add_seed_flag,
    import_flag_modules,
    load_run_config,
    setting_type,
)
from fnrl.settings import ConfigError

PROG = "python -m fnrl.render"


class RenderedEpisode(NamedTuple):
    """One recorded episode: its unclipped return, length in agent steps and video frames."""

    returns: float
    length: int
    frames: int


def _gymnasium_fps(env_id: str, default: float = 30.0) -> float:
    """The real-time frame rate a Gymnasium env declares (CartPole: 50), else ``default``."""
    import gymnasium

    try:
        env = gymnasium.make(env_id)
    except Exception:  # not registered in Gymnasium, or not constructible here
        return default
    try:
        return float(env.metadata.get("render_fps") or default)
    finally:
        env.close()


def make_render_env(config: Any, seed: int) -> tuple[Any, float]:
    """One env of the run's ``config`` that also renders RGB frames, and its real-time fps.

    Raises:
        ValueError: the env cannot render (the message says why).
    """
    # The envs and the run shell take seconds to import: here, so that -h stays fast.
    from fnrl.envs import atari_task_id
    from fnrl.parallel.local import make_training_env

    env = make_training_env(config, 1, seed, render=True)
    if atari_task_id(config.env_id) is not None:
        return env, 60 / env.frames_per_step  # the ALE runs at 60 frames per second
    return env, _gymnasium_fps(config.env_id)


def _agent_view(obs: Mapping[str, np.ndarray]) -> np.ndarray:
    gray = np.asarray(obs["screen"])[0, :, :, -1]
    rgb = np.repeat(gray[:, :, None], 3, axis=-1)
    return rgb.repeat(2, axis=0).repeat(2, axis=1)


def render_episodes(
    env: Any,
    policy: Callable,
    params: Any,
    key: Any,
    initial_carry: Any,
    episodes: int,
    write: Callable[[np.ndarray], None],
    *,
    max_steps: int | None = None,
    agent_view: bool = False,
) -> list[RenderedEpisode]:
    """Plays ``episodes`` episodes on a render env, passing each frame to ``write``.

    Args:
        env: from :func:`make_render_env`.
        policy: a compiled ``fnrl.parallel.make_eval_policy`` policy.
        params: the network variables.
        key: consumed by sampling policies, one subkey per step
            (:func:`~fnrl.parallel.evaluation.step_keys`).
        initial_carry: the body's zero state for one env.
        episodes: how many episodes to record.
        write: receives ``[H, W, 3]`` uint8 frames.
        max_steps: cut each episode after this many env steps; None plays it to its end.
        agent_view: write the agent's observation instead of the env's RGB screen.

    Returns:
        The recorded episodes.
    """
    import jax

    # The run shell imports the envs and tensorboardX (seconds): here, so that -h stays fast.
    from fnrl.parallel.evaluation import step_keys

    def frame(timestep) -> np.ndarray:
        return _agent_view(timestep.obs) if agent_view else env.render()

    recorded: list[RenderedEpisode] = []
    timestep, carry, keys = env.reset(), initial_carry, step_keys(key)
    write(frame(timestep))
    steps = 0
    while True:
        actions, carry = policy(params, next(keys), carry, timestep.obs, timestep.first)
        actions = jax.device_get(actions)
        timestep = env.step(actions)
        steps += 1
        write(frame(timestep))
        done = bool(timestep.episode.done[0])
        if not done and (max_steps is None or steps < max_steps):
            continue
        recorded.append(
            RenderedEpisode(
                float(timestep.episode.returns[0]), int(timestep.episode.length[0]), steps + 1
            )
        )
        if len(recorded) == episodes:
            return recorded
        # After a natural end the env's next step is its automatic reset (the action is
        # ignored); after a cut the env is reset.
        timestep = env.step(actions) if done else env.reset()
        steps = 0
        write(frame(timestep))


def make_parser() -> argparse.ArgumentParser:
    """The ``fnrl.render`` argument parser."""
    parser = CommandLineParser(
        prog=PROG, description="Record a saved policy playing, as an MP4 or GIF video."
    )
    parser.add_argument("run_dir", help="the run directory ({log_dir}/{env_id}/{run_id})")
    parser.add_argument(
        "--checkpoint", help="a step count, a checkpoint name (step_N) or path; default: latest"
    )
    add_episodes_flag(parser, 1, "episodes to record")
    parser.add_argument(
        "--out", default=None, help="video file, .mp4 or .gif (default: RUN_DIR/eval/video.mp4)"
    )
    parser.add_argument(
        "--fps",
        type=setting_type(float, above=0.0),
        default=None,
        help="frames per second (default: real time)",
    )
    parser.add_argument(
        "--max-steps",
        type=setting_type(int, at_least=1),
        default=None,
        help="cut each episode after this many env steps",
    )
    add_greedy_flag(parser)
    add_seed_flag(parser, "env seed (default: the run's + 2,000,000)")
    parser.add_argument(
        "--agent-view",
        action="store_true",
        help="record the agent's observation (Atari: 84x84 gray) instead of the RGB screen",
    )
    add_import_flag(parser)
    return parser


def render(
    run_dir: str | Path,
    out: str | Path,
    *,
    checkpoint: str | None = None,
    episodes: int = 1,
    fps: float | None = None,
    max_steps: int | None = None,
    greedy: bool = True,
    seed: int | None = None,
    agent_view: bool = False,
) -> list[RenderedEpisode]:
    """Records a run's policy to ``out``; see the module docstring and ``--help``.

    Raises:
        ValueError: bad arguments, or an env that cannot render.
        CheckpointError: the checkpoint is missing, corrupt or does not fit.
    """
    import jax

    from fnrl.config import NetworkSettings

    # The run shell imports the envs and tensorboardX (seconds): here, so that -h stays fast.
    from fnrl.parallel.evaluation import EVALUATE_SEED_OFFSET, make_eval_policy
    from fnrl.parallel.local import make_agent, make_network

    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1, got {max_steps}")
    if fps is not None and fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"--out must end in .mp4 or .gif, got {out.name!r}")
    if out.suffix.lower() == ".mp4" and not can_write_mp4():
        raise ValueError(
            f"--out {out.name}: MP4 needs imageio-ffmpeg: pip install 'fnrl[video]' "
            "(or write a .gif)"
        )
    with claimed(out) as partial:  # a path that cannot be written fails before anything loads
        config = load_run_config(run_dir)
        path = find_checkpoint(run_dir, checkpoint)
        seed = config.seed + EVALUATE_SEED_OFFSET if seed is None else seed
        env, real_time_fps = make_render_env(config, seed)
        try:
            if agent_view and "screen" not in env.spec.observations:
                raise ValueError("--agent-view needs an image observation ('screen')")
            agent = make_agent(config, env.spec)
            network = make_network(config.section(NetworkSettings), env.spec)
            params = load_params(path, jax.eval_shape(agent.init, jax.random.PRNGKey(0)))
            policy = jax.jit(make_eval_policy(network, greedy=greedy))
            with video_writer(partial, fps or real_time_fps, out) as write:
                return render_episodes(
                    env,
                    policy,
                    params,
                    jax.random.PRNGKey(seed),
                    network.initial_carry(1),
                    episodes,
                    write,
                    max_steps=max_steps,
                    agent_view=agent_view,
                )
        finally:
            env.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: records the video and prints one line per episode."""
    parser = make_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import_flag_modules(parser, args)
    out = Path(args.out) if args.out else Path(args.run_dir) / "eval" / "video.mp4"
    try:
        recorded = render(
            args.run_dir,
            out,
            checkpoint=args.checkpoint,
            episodes=args.episodes,
            fps=args.fps,
            max_steps=args.max_steps,
            greedy=args.greedy,
            seed=args.seed,
            agent_view=args.agent_view,
        )
    except ConfigError as e:
        print(f"fnrl.render: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as e:
        print(f"fnrl.render: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fnrl.render: interrupted", file=sys.stderr)
        return 130
    for i, episode in enumerate(recorded):
        print(
            f"episode {i}: return {episode.returns:.2f}, length {episode.length}, "
            f"frames {episode.frames}",
            flush=True,
        )
    print(f"video written to {out} ({sum(e.frames for e in recorded)} frames)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
