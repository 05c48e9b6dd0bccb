"""Networks: ``flax.linen`` modules composed as trunk → body → head (adept's ModularNetwork).

Pure code: modules hold no RNG or optimizer and return ``NetworkOutput`` (logits per action key
and a value), never distribution objects. ``fnrl.networks.torch_interop`` (optional extra
``torch``) converts their variables to and from PyTorch ``state_dict`` s;
``python -m fnrl.networks`` lists the registered networks (``--params``: with their parameter
counts);
``fnrl.networks.zscore`` holds the running observation statistics of ``--zscore-norm-env``;
``fnrl.networks.scan`` runs a one-step network over a time-major sequence (``scan_apply``).
"""

from fnrl.networks._layers import NORMALIZATIONS, BatchNorm, LayerNorm
from fnrl.networks.bodies import (
    IdentityBody,
    LinearBody,
    LSTMBody,
    LSTMCarry,
    LSTMCell,
    LSTMCellLayerNorm,
    Mnih2013Linear,
    Mnih2013LSTM,
    RMCBody,
    RMCCarry,
    reset_carry,
)
from fnrl.networks.modular import ModularNetwork, NetworkOutput, build_module, count_params
from fnrl.networks.modules import (
    MultiHeadSelfAttention,
    RelationalMHDPA,
    RMCCell,
    initial_memory,
)
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
from fnrl.networks.resnets import (
    IMPALA,
    ResNet18,
    ResNet18V2,
    ResNet34,
    ResNet34V2,
    ResNet50,
    ResNet50V2,
    ResNet101,
    ResNet101V2,
    ResNet152,
    ResNet152V2,
)
from fnrl.networks.scan import STATE_COLLECTIONS, mean_over_steps, scan_apply
from fnrl.networks.trunks import (
    FourConv,
    FourConvLarger,
    FourConvSpatialAttention,
    IdentityTrunk,
    LinearTrunk,
    MinAtar,
    Mnih2013,
    Nature,
    flatten_chw,
)
from fnrl.networks.zscore import (
    OBS_STATS,
    RunningMoments,
    batch_moments,
    init_moments,
    merge_moments,
    pool_moments,
    update_moments,
    zscore_normalize,
)

__all__ = [
    "DISCRETE_NETWORKS",
    "IMPALA",
    "NETWORK_BODIES",
    "OBS_STATS",
    "VISION_NETWORKS",
    "BatchNorm",
    "FourConv",
    "FourConvLarger",
    "FourConvSpatialAttention",
    "IdentityBody",
    "IdentityTrunk",
    "LSTMBody",
    "LSTMCarry",
    "LSTMCell",
    "LSTMCellLayerNorm",
    "LayerNorm",
    "LinearBody",
    "LinearTrunk",
    "MinAtar",
    "Mnih2013",
    "Mnih2013LSTM",
    "Mnih2013Linear",
    "ModularNetwork",
    "MultiHeadSelfAttention",
    "NORMALIZATIONS",
    "Nature",
    "NetworkOutput",
    "RMCBody",
    "RMCCarry",
    "RMCCell",
    "RelationalMHDPA",
    "ResNet101",
    "ResNet101V2",
    "ResNet152",
    "ResNet152V2",
    "ResNet18",
    "ResNet18V2",
    "ResNet34",
    "ResNet34V2",
    "ResNet50",
    "ResNet50V2",
    "RunningMoments",
    "STATE_COLLECTIONS",
    "batch_moments",
    "build_module",
    "count_params",
    "flatten_chw",
    "get_discrete_network",
    "get_network_body",
    "get_vision_network",
    "init_moments",
    "initial_memory",
    "is_recurrent",
    "mean_over_steps",
    "merge_moments",
    "pool_moments",
    "register_discrete_network",
    "register_network_body",
    "register_vision_network",
    "reset_carry",
    "scan_apply",
    "update_moments",
    "zscore_normalize",
]
