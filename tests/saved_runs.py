"""Run directories for the evaluate and render tests."""

import jax

from fnrl.agents import init_train_state
from fnrl.config import TrainConfig, with_agent_settings
from fnrl.optimizers import make_rmsprop
from fnrl.parallel.local import make_agent, make_training_env
from fnrl.parallel.run import open_run


def untrained_run(log_dir, **settings):
    """A run directory with one checkpoint of freshly initialized params (no training)."""
    config = with_agent_settings(TrainConfig(log_dir=str(log_dir), nb_eval_env=0, **settings))
    env = make_training_env(config, 1, config.seed)
    frames_per_step = env.frames_per_step
    agent = make_agent(config, env.spec)
    env.close()
    state = init_train_state(agent, make_rmsprop(1e-3), jax.random.PRNGKey(config.seed))
    run = open_run(config, "local", frames_per_step=frames_per_step, show_progress=False)
    try:
        run.save(state)
    finally:
        run.close()
    return run.run_dir
