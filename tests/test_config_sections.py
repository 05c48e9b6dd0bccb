"""The config's sections: each field in one section, each part given its own section."""

import dataclasses

import pytest

from fnrl.agents import get_agent
from fnrl.config import (
    SECTIONS,
    ConfigError,
    EnvSettings,
    EvalSettings,
    ImpalaConfig,
    ImpalaSettings,
    NetworkSettings,
    ToweredConfig,
    ToweredSettings,
    TrainConfig,
    make_config,
)


def _names(config_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class)]


def test_train_config_holds_each_field_of_its_sections_once():
    names = _names(TrainConfig)
    assert sorted(names) == sorted(n for section in SECTIONS for n in _names(section))
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("mode", "section"), [(ToweredConfig, ToweredSettings), (ImpalaConfig, ImpalaSettings)]
)
def test_a_mode_adds_its_section_after_the_run_fields(mode, section):
    names = _names(mode)
    assert names[: len(_names(TrainConfig))] == _names(TrainConfig)
    assert set(names) == set(_names(TrainConfig)) | set(_names(section))


def test_section_gives_a_part_the_values_of_its_fields():
    config = make_config(ImpalaConfig, env_id="CartPole-v1", nb_env=5, nb_actor=3)
    env = config.section(EnvSettings)
    assert type(env) is EnvSettings
    assert dataclasses.asdict(env) == {name: getattr(config, name) for name in _names(EnvSettings)}
    assert env.nb_env == 5 and config.section(ImpalaSettings).nb_actor == 3
    assert config.section(NetworkSettings).vision_network == "Nature"  # IMPALA's default


def test_a_section_made_alone_checks_its_values_and_invariants():
    with pytest.raises(ConfigError, match=r"^--nb-env \(nb_env\) must be at least 1, got 0$"):
        EnvSettings(nb_env=0)
    with pytest.raises(ConfigError, match=r"^--nb-eval-env \(nb_eval_env\) must be 0 when"):
        EvalSettings(eval_every=10, nb_eval_env=1)
    with pytest.raises(ConfigError, match=r"^--process-id \(process_id\) must be in \[0, 0\]"):
        ToweredSettings(process_id=1)


def test_section_reads_the_agents_settings_too():
    config = make_config(TrainConfig, env_id="CartPole-v1", agent="PPO", epochs=2)
    assert config.section(get_agent("PPO").settings).epochs == 2
