"""Test configuration: strict JAX numerics for every test, and the ``quick`` selection."""

import jax
import pytest

# The test files that train nothing and start no process: the pure functions (losses,
# distributions, optimizers, replay), the networks, the envs' adapters, the config and the
# layers. `pytest -n auto -m quick` runs them (README: its time on 2 cores).
QUICK_FILES = {
    "test_action_masks.py",
    "test_actor_critic.py",
    "test_logged_entropy_loss.py",
    "test_unroll.py",
    "test_vtrace.py",
    "test_base.py",
    "test_envpool.py",
    "test_make_env.py",
    "test_bodies.py",
    "test_conv.py",
    "test_modular_network.py",
    "test_modules.py",
    "test_network_layers.py",
    "test_network_registry.py",
    "test_scan.py",
    "test_trunks.py",
    "test_zscore.py",
    "test_runtime_abort.py",
    "test_config_sections.py",
    "test_distributions.py",
    "test_layers.py",
    "test_losses.py",
    "test_optimizers.py",
    "test_replay.py",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in QUICK_FILES:
            item.add_marker(pytest.mark.quick)


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield
