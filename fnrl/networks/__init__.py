"""Networks: ``flax.linen`` modules composed as trunk → body → head (adept's ModularNetwork).

Pure code: modules hold no RNG or optimizer and return ``NetworkOutput`` (logits per action key
and a value), never distribution objects.
"""

from fnrl.networks.bodies import (
    IdentityBody,
    LinearBody,
    LSTMBody,
    LSTMCarry,
    LSTMCell,
    LSTMCellLayerNorm,
    reset_carry,
)
from fnrl.networks.modular import ModularNetwork, NetworkOutput, count_params
from fnrl.networks.registry import (
    DISCRETE_NETWORKS,
    NETWORK_BODIES,
    VISION_NETWORKS,
    get_discrete_network,
    get_network_body,
    get_vision_network,
    is_recurrent,
    register_discrete_network,
    register_network_body,
    register_vision_network,
)
from fnrl.networks.trunks import (
    FourConv,
    FourConvLarger,
    IdentityTrunk,
    LinearTrunk,
    Mnih2013,
    Nature,
    flatten_chw,
)

__all__ = [
    "DISCRETE_NETWORKS",
    "NETWORK_BODIES",
    "VISION_NETWORKS",
    "FourConv",
    "FourConvLarger",
    "IdentityBody",
    "IdentityTrunk",
    "LSTMBody",
    "LSTMCarry",
    "LSTMCell",
    "LSTMCellLayerNorm",
    "LinearBody",
    "LinearTrunk",
    "Mnih2013",
    "ModularNetwork",
    "Nature",
    "NetworkOutput",
    "count_params",
    "flatten_chw",
    "get_discrete_network",
    "get_network_body",
    "get_vision_network",
    "is_recurrent",
    "register_discrete_network",
    "register_network_body",
    "register_vision_network",
    "reset_carry",
]
