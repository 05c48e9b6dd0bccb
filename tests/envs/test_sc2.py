"""StarCraft II: the real adapter against pysc2's mock game (``SC2TestEnv``: real specs, a fake
game), its FunctionCalls checked against pysc2's ``ValidActions``, and every mode from the CLI.

A test at the end plays the real game; it runs only where ``SC2PATH/Versions`` exists.
"""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("pysc2_evolved")

from cli_runs import run_fnrl  # noqa: E402
from sc2_mock_game import mock_game, scoring_mock_game  # noqa: E402

from fnrl.agents import make_actor_critic  # noqa: E402
from fnrl.envs import make_env, sc2  # noqa: E402
from fnrl.networks import ModularNetwork  # noqa: E402
from fnrl.specs import DiscreteSpec  # noqa: E402

FUNCTIONS = 573  # pysc2-evolved 1.1.1's function count
MOCK_AVAILABLE = [0, 1, 2, 3, 4, 6, 7, 451, 452]  # what SC2TestEnv offers


@pytest.fixture
def mock_env():
    sc2.use_game(mock_game)
    env = make_env("MoveToBeacon", 2, 0)
    yield env
    env.close()
    sc2.use_game(sc2.launch_game)


def _actions_module():
    sc2.pysc2()
    from pysc2_evolved.lib import actions, features

    return actions, features


def test_obs_and_actions_have_the_documented_keys_shapes_and_dtypes(mock_env):
    spec = mock_env.spec
    assert {k: (s.shape, s.dtype) for k, s in spec.observations.items()} == {
        "vision": ((84, 84, 38), np.float32),  # 27 screen + 11 minimap layers
        "control_groups": ((20,), np.float32),
        "available_actions": ((FUNCTIONS,), np.float32),
    }
    first = mock_env.reset()
    assert {k: (v.shape, v.dtype) for k, v in first.obs.items()} == {
        k: ((2, *s.shape), s.dtype) for k, s in spec.observations.items()
    }
    assert np.flatnonzero(first.obs["available_actions"][0]).tolist() == MOCK_AVAILABLE
    assert spec.actions["func_id"] == DiscreteSpec(FUNCTIONS, mask="available_actions")
    heads = {name: s.num_values for name, s in spec.actions.items()}
    assert heads == {
        "func_id": FUNCTIONS, "screen_x": 84, "screen_y": 84, "minimap_x": 84, "minimap_y": 84,
        "screen2_x": 84, "screen2_y": 84, "queued": 2, "control_group_act": 5,
        "control_group_id": 10, "select_point_act": 4, "select_add": 2, "select_unit_act": 4,
        "select_unit_id": 500, "select_worker": 4, "build_queue_id": 10, "unload_id": 500,
    }  # fmt: skip
    actions, _ = _actions_module()
    move = actions.FUNCTIONS.Move_screen.id  # takes queued and screen
    used = {name: s.used_when[1][move] for name, s in spec.actions.items() if s.used_when}
    assert sorted(name for name, u in used.items() if u) == ["queued", "screen_x", "screen_y"]
    assert not any(s.used_when[1][0] for s in spec.actions.values() if s.used_when)  # no-op
    # An episode of the mock game is 10 steps, then the next step is the automatic reset.
    for _ in range(10):
        step = mock_env.step({k: np.zeros(2, np.int32) for k in spec.actions})
    assert step.terminated.all() and step.episode.done.all()
    assert step.episode.length.tolist() == [10, 10]
    assert mock_env.step({k: np.zeros(2, np.int32) for k in spec.actions}).first.all()


def test_adepts_reward_scales_apply_to_learning_rewards_only():
    assert sc2.REWARD_SCALES == {"DefeatRoaches": 0.1, "DefeatZerglingsAndBanelings": 0.2}
    sc2.use_game(scoring_mock_game)
    try:
        for env_id, learned in [("DefeatRoaches", 1.0), ("MoveToBeacon", 10.0)]:
            env = make_env(env_id, 1, 0)
            env.reset()
            for _ in range(3):
                step = env.step({k: np.zeros(1, np.int32) for k in env.spec.actions})
            env.close()
            np.testing.assert_allclose(step.reward, [learned], rtol=1e-6)
            np.testing.assert_allclose(step.episode.returns, [30.0])  # the game's score
    finally:
        sc2.use_game(sc2.launch_game)


def test_every_function_call_is_valid_for_pysc2s_valid_actions():
    actions, features = _actions_module()
    interface = sc2.game_settings("MoveToBeacon", 0)["agent_interface_format"]
    valid = features.Features(interface).action_spec()
    heads = sc2.argument_heads()
    rng = np.random.default_rng(0)
    available = rng.random(FUNCTIONS) < 0.5
    available[0] = True
    chosen = set()
    for _ in range(5000):
        action = {"func_id": rng.integers(FUNCTIONS)}
        action.update({head: rng.integers(values) for head, (_, values) in heads.items()})
        call = sc2.function_call(action, available)
        function = valid.functions[call.function]
        assert available[call.function] and function.id == call.function
        assert call.function == action["func_id"] or not available[action["func_id"]]
        assert len(call.arguments) == len(function.args)
        for values, arg in zip(call.arguments, function.args, strict=True):
            assert len(values) == len(arg.sizes)
            assert all(0 <= v < size for v, size in zip(values, arg.sizes, strict=True))
        actions.FunctionCall.init_with_validation(call.function, call.arguments)
        chosen.add(call.function)
    assert 0 in chosen and len(chosen) > 200  # the unavailable ones became no-ops


def test_masked_functions_are_never_sampled(mock_env):
    spec = mock_env.spec
    network = ModularNetwork(spec, vision_network="Nature", network_body="Linear", normalize=False)
    agent = make_actor_critic(network, spec)
    params = agent.init(jax.random.key(0))
    obs = mock_env.reset().obs
    batch = {k: np.repeat(v[:1], 512, axis=0) for k, v in obs.items()}
    act = jax.jit(agent.act)
    sampled = set()
    for step in range(6):  # 3,072 sampled steps
        actions, _, _ = act(params, jax.random.key(step), (), batch, np.ones(512, bool))
        sampled |= set(np.asarray(actions["func_id"]).tolist())
    assert sampled <= set(MOCK_AVAILABLE) and len(sampled) > 3


def test_importing_fnrl_never_imports_pysc2():
    code = "import sys, fnrl, fnrl.envs, fnrl.train, fnrl.evaluate; "
    code += "print('pysc2_evolved' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip() == "False", result.stderr


def test_an_sc2_id_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pysc2_evolved", None)
    sc2.pysc2.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"sc2 extra .*pip install 'fnrl\[sc2\]'"):
            make_env("MoveToBeacon", 1, 0)
    finally:
        monkeypatch.undo()
        sc2.pysc2.cache_clear()


def test_without_the_game_one_line_names_sc2path_and_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    with pytest.raises(ValueError, match=f"{tmp_path / 'Versions'}.*set SC2PATH") as error:
        make_env("MoveToBeacon", 1, 0)
    assert "\n" not in str(error.value)
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "--env-id", "MoveToBeacon", "-mts", "16"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "SC2PATH": str(tmp_path)},
    )
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("set SC2PATH to the directory that holds Versions")
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "towered", "impala"])
def test_every_mode_trains_sc2_then_evaluates_from_new_processes(mode, tmp_path):
    flags = [mode, "--env-id", "MoveToBeacon", "-n", "2", "--exp-length", "4", "-mts", "32"]
    flags += ["--vision-network", "Nature", "--epoch-len", "16", "--import", "sc2_mock_game"]
    if mode == "impala":
        flags += ["--nb-actor", "1"]
    train = run_fnrl("fnrl.train", *flags, "--log-dir", str(tmp_path), cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    (run_dir,) = (tmp_path / "MoveToBeacon").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["imports"] == "sc2_mock_game"
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    evaluate = run_fnrl("fnrl.evaluate", str(run_dir), "--episodes", "2", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert "2 greedy episodes" in evaluate.stdout


@pytest.mark.skipif(not (sc2.game_dir() / "Versions").is_dir(), reason="StarCraft II not installed")
def test_the_real_game_plays_move_to_beacon():
    env = make_env("MoveToBeacon", 1, 0)
    try:
        step = env.reset()
        rng = np.random.default_rng(0)
        for _ in range(20):
            available = np.flatnonzero(step.obs["available_actions"][0])
            action = {k: rng.integers(s.num_values, size=1) for k, s in env.spec.actions.items()}
            action["func_id"] = rng.choice(available, size=1)
            step = env.step(action)
            assert step.obs["vision"].shape == (1, 84, 84, 38)
            assert np.isfinite(step.reward).all()
    finally:
        env.close()
