"""Learning tests of the vector preset: the bare command with only ``--env-id`` learns.

Thresholds are Gymnasium's registered ``reward_threshold`` of each task (the score at which it
counts as solved), checked against RL Baselines3 Zoo's A2C result (DLR-RM/rl-baselines3-zoo,
benchmark.md: 500k steps, deterministic policy over 150k evaluation steps). Returns are the
greedy policy's on fresh evaluation envs, as the Zoo evaluates. CartPole-v1's test is in
tests/test_evaluate.py.

MountainCar-v0 is not here: with the vector preset it scores -200 (never reaches the flag) in
every episode of 500k steps; its reward is -1 until the flag, and the Zoo's A2C result (-111 at
1M steps) uses observation and reward normalization, which fnrl does not have.
"""

import numpy as np
import pytest

from fnrl.evaluate import evaluate_checkpoints
from fnrl.parallel.local import train_local
from fnrl.train import parse_args


def _train_and_evaluate(tmp_path, env_id, *, episodes):
    """Trains the bare command on ``env_id``, then plays the final checkpoint greedily."""
    _, config = parse_args(["--env-id", env_id, "--log-dir", str(tmp_path)])
    result = train_local(config, show_progress=False)
    assert result.env_steps == config.max_train_steps == 500_000
    (evaluation,) = evaluate_checkpoints(
        result.run_dir, [result.last_checkpoint], episodes=episodes, nb_env=10
    )
    return result, evaluation


@pytest.mark.slow
def test_acrobot_reaches_gymnasiums_threshold_of_minus_100_within_500k_steps(tmp_path):
    """Gymnasium's Acrobot-v1 ``reward_threshold`` is -100; the Zoo's A2C scores -83.4 ± 17.2.

    Measured (seed 0, 1, 2): greedy means -83.3, -83.1, -82.9 over 50 games; about 40 s of
    training on 2 CPU cores.
    """
    result, evaluation = _train_and_evaluate(tmp_path, "Acrobot-v1", episodes=50)
    assert evaluation["return"]["mean"] >= -100, evaluation["return"]
    last = result.episode_returns[-20:]  # the sampling policy while training
    assert len(last) == 20 and np.mean(last) >= -100, np.mean(last)
