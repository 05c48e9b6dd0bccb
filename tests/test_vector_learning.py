"""Learning tests of the vector preset: the bare command with only ``--env-id`` learns.

Thresholds come from published results: Gymnasium's registered ``reward_threshold`` of a task
(the score at which it counts as solved) where the preset reaches it, otherwise RL Baselines3
Zoo's A2C result (DLR-RM/rl-baselines3-zoo, benchmark.md: deterministic policy over 150k
evaluation steps) less one standard deviation. Returns are the greedy policy's on fresh
evaluation envs, as the Zoo evaluates. CartPole-v1's test is in tests/test_evaluate.py.

MountainCar-v0's reward is -1 per step until the car reaches the flag, and its velocity is
about 0.01 in size: without the preset's observation normalization (``--zscore-norm-env``, the
Zoo's ``normalize: true``) the network does not see it and every episode scores -200.
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

    Measured (seed 0, 1, 2): greedy means -85.0, -79.7, -81.7 over 50 games, the sampling
    policy's last 20 training episodes -84.9, -88.1, -90.3; about 25 s of training on 2 CPU
    cores.
    """
    result, evaluation = _train_and_evaluate(tmp_path, "Acrobot-v1", episodes=50)
    assert evaluation["return"]["mean"] >= -100, evaluation["return"]
    last = result.episode_returns[-20:]  # the sampling policy while training
    assert len(last) == 20 and np.mean(last) >= -100, np.mean(last)


ZOO_A2C_MOUNTAINCAR = (-111.263, 24.087)  # benchmark.md: mean and std of the return, 1M steps


@pytest.mark.slow
def test_mountaincar_comes_within_one_std_of_the_zoos_a2c_result_within_500k_steps(tmp_path):
    """RL Baselines3 Zoo's A2C scores -111.3 ± 24.1 after 1M steps: the threshold is -135.4.

    Gymnasium's ``reward_threshold`` of -110 is out of reach: the greedy policy takes one swing
    too many from about two starts in three (about -150, the others about -88). Measured (seed
    0, 1, 2): greedy means -128.9, -132.2, -132.2 over 50 games, the sampling policy's last 20
    training episodes -124.6, -126.7, -126.1; 1M steps do no better (-128.7, -134.1, -132.2);
    about 25 s of training on 2 CPU cores.
    """
    mean, std = ZOO_A2C_MOUNTAINCAR
    result, evaluation = _train_and_evaluate(tmp_path, "MountainCar-v0", episodes=50)
    assert evaluation["return"]["mean"] >= mean - std, evaluation["return"]
    last = result.episode_returns[-20:]
    assert len(last) == 20 and np.mean(last) >= mean - std, np.mean(last)
