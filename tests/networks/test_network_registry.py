"""Name registries: lookups, error messages, user registration, recurrence."""

import flax.linen as nn
import pytest

import fnrl.networks as networks
from fnrl.networks import (
    DISCRETE_NETWORKS,
    NETWORK_BODIES,
    VISION_NETWORKS,
    FourConv,
    LSTMBody,
    Nature,
    get_discrete_network,
    get_network_body,
    get_vision_network,
    is_recurrent,
    register_discrete_network,
    register_network_body,
    register_vision_network,
)


def test_every_public_name_is_importable():
    for name in networks.__all__:
        assert getattr(networks, name) is not None, name


def test_lookups_return_the_registered_classes():
    assert get_vision_network("FourConv") is FourConv
    assert get_vision_network("Nature") is Nature
    assert get_network_body("LSTM") is LSTMBody
    assert set(NETWORK_BODIES) == {
        "Identity",
        "Linear",
        "LSTM",
        "Mnih2013Linear",
        "Mnih2013LSTM",
        "RMC",
    }
    assert {"Identity", "Linear"} <= set(DISCRETE_NETWORKS)
    resnets = {f"ResNet{depth}{v}" for depth in (18, 34, 50, 101, 152) for v in ("", "V2")}
    adept_2018 = {"FourConv", "FourConvLarger", "FourConvSpatialAttention", "Mnih2013", "Nature"}
    assert set(VISION_NETWORKS) == adept_2018 | resnets | {"IMPALA", "MinAtar"}


@pytest.mark.parametrize(
    ("lookup", "kind"),
    [
        (get_vision_network, "vision network"),
        (get_discrete_network, "discrete network"),
        (get_network_body, "network body"),
    ],
)
def test_unknown_name_raises_value_error_listing_registered_names(lookup, kind):
    with pytest.raises(ValueError, match=f"unknown {kind} 'Nope'; choose one of: ") as info:
        lookup("Nope")
    registry = {
        "vision network": VISION_NETWORKS,
        "discrete network": DISCRETE_NETWORKS,
        "network body": NETWORK_BODIES,
    }[kind]
    assert str(info.value).endswith(", ".join(sorted(registry)))


def test_vision_error_message_format():
    with pytest.raises(ValueError) as info:
        get_vision_network("X")
    assert str(info.value).startswith("unknown vision network 'X'; choose one of: FourConv, ")
    assert "Nature" in str(info.value)


def test_is_recurrent_by_body_name():
    for name in ("LSTM", "Mnih2013LSTM", "RMC"):
        assert is_recurrent(name)
    for name in ("Linear", "Identity", "Mnih2013Linear"):
        assert not is_recurrent(name)
    with pytest.raises(ValueError, match="LSTM"):
        is_recurrent("GRU")


class _TinyTrunk(nn.Module):
    normalize: bool = True

    @nn.compact
    def __call__(self, x, *, train):
        del train
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


class _TinyBody(nn.Module):
    hidden_size: int = 8
    normalize: bool = True
    recurrent = False

    def __call__(self, carry, x, *, train):
        del train
        return carry, x

    @classmethod
    def initial_carry(cls, batch_size, hidden_size):
        del batch_size, hidden_size
        return ()


def test_user_registration_and_duplicate_names(monkeypatch):
    monkeypatch.setitem(VISION_NETWORKS, "_Tiny", _TinyTrunk)  # cleaned up after the test
    assert get_vision_network("_Tiny") is _TinyTrunk
    register_vision_network("_Tiny", _TinyTrunk)  # re-registering the same class is fine
    with pytest.raises(ValueError, match="already registered"):
        register_vision_network("FourConv", _TinyTrunk)
    with pytest.raises(TypeError):
        register_discrete_network("_NotAModule", object)
    with pytest.raises(TypeError, match="recurrent"):
        register_network_body("_NoRecurrent", _TinyTrunk)


def test_register_functions_add_to_registries(monkeypatch):
    monkeypatch.setattr("fnrl.networks.registry.DISCRETE_NETWORKS", dict(DISCRETE_NETWORKS))
    monkeypatch.setattr("fnrl.networks.registry.NETWORK_BODIES", dict(NETWORK_BODIES))
    register_discrete_network("_Tiny", _TinyTrunk)
    register_network_body("_Tiny", _TinyBody)
    assert get_discrete_network("_Tiny") is _TinyTrunk
    assert get_network_body("_Tiny") is _TinyBody
    assert not is_recurrent("_Tiny")
    assert "_Tiny" not in DISCRETE_NETWORKS  # the module-level originals are untouched
