"""A plug-in (``--import sc2_mock_game``) that plays pysc2's mock game instead of StarCraft II.

pysc2's ``mock_sc2_env.SC2TestEnv`` has the real observation and action specs of an 84x84
feature interface and a fake game: zero feature layers, nine available functions (no-op, camera
and selection functions), reward 0, an episode every 10 steps. Everything else, the adapter, its
subprocesses and fnrl's modes, runs for real.
"""

from fnrl.envs import sc2


def mock_game(**settings):
    """pysc2's ``SC2TestEnv`` with the adapter's ``SC2Env`` settings."""
    sc2.pysc2()  # pysc2 imported quietly, before its mock module
    from pysc2_evolved.env import mock_sc2_env

    return mock_sc2_env.SC2TestEnv(**settings)


sc2.use_game(mock_game)


def scoring_mock_game(**settings):
    """The mock game scoring 10 at every step."""
    game = mock_game(**settings)
    game.next_timestep = [step._replace(reward=10.0) for step in game.next_timestep]
    return game
