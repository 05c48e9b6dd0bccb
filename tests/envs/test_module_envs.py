"""Gymnasium's ``module:Id`` env ids, and MultiDiscrete actions, through every CLI."""

import pytest
from cli_runs import train_then_evaluate

from fnrl.envs import make_env
from fnrl.specs import DiscreteSpec

ENV_ID = "toy_envs:ToyKeys-v0"


def test_a_module_id_imports_its_module_and_gives_one_head_per_component():
    env = make_env(ENV_ID, 2, seed=0)
    try:
        assert env.spec.actions == {"action_0": DiscreteSpec(2), "action_1": DiscreteSpec(3)}
    finally:
        env.close()
    with pytest.raises(ValueError, match="cannot import the module 'no_such_module'"):
        make_env("no_such_module:Env-v0", 1, seed=0)


def test_a_module_id_multi_discrete_env_trains_then_evaluates_from_a_new_process(tmp_path):
    train_then_evaluate(ENV_ID, tmp_path)
