"""Every public name exists and says what it is."""

import importlib
import inspect

import pytest

PACKAGES = [
    "fnrl",
    "fnrl.agents",
    "fnrl.envs",
    "fnrl.losses",
    "fnrl.networks",
    "fnrl.parallel",
    "fnrl.replay",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_imports_and_is_documented(package):
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value) or inspect.ismodule(value):
            assert inspect.getdoc(value), f"{package}.{name} has no docstring"
