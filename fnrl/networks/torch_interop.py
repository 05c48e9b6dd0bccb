"""Weights between fnrl and PyTorch: flax variables ⇄ a ``torch.nn`` ``state_dict``, losslessly.

Every fnrl network has a ``torch.nn`` twin whose parameters carry the flax names, joined by
``.`` (``trunk_screen.conv1.weight``, ``body.lstm.ih.weight``, ``head_action.bias``, ``critic``)
in adept's (PyTorch's) layouts:

* ``Dense`` kernel ``[in, out]`` ⇄ ``Linear.weight`` ``[out, in]``;
* ``Conv`` kernel ``[kh, kw, in, out]`` (channels-last) ⇄ ``Conv2d.weight``
  ``[out, in, kh, kw]`` (channels-first);
* ``BatchNorm`` ``scale``/``bias`` params and ``mean``/``var``/``count`` batch statistics ⇄
  ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked`` (int64 in
  torch, float32 in fnrl);
* ``LayerNorm`` ``scale`` ⇄ ``weight``;
* ``LSTMCell`` (torch's cell, gate order ``[i, f, g, o]`` on both sides) ``ih``/``hh`` Dense ⇄
  ``weight_ih``, ``bias_ih``, ``weight_hh``, ``bias_hh`` (the two biases stay split, as torch
  keeps them). adept's ``LSTMCellLayerNorm`` keeps its ``ih``/``hh`` Linear layers and its
  ``[i, f, o | g]`` gate order on both sides.

The running observation statistics of ``zscore_norm_env`` (the ``obs_stats`` collection) are
not converted: they preprocess observations before the network, which adept did in its env
wrappers, so the torch twin has no place for them. ``to_torch_state_dict`` leaves them out and
``from_torch_state_dict`` returns the other collections; keep the statistics beside the
``state_dict`` and add them back (``{**variables, "obs_stats": obs_stats}``).

adept's own key names: ``to_adept_state_dict`` and ``from_adept_state_dict`` write and read
the ``state_dict`` of adept's 2018 ``ModularNetwork`` itself (what adept saves as
``model_<step>.pth``), with one pathway per observation in ``trunk.pathways.<name>``, the body in
``body``, the action and critic heads in ``head.heads.<name>`` and the ResNet stages in
``_resnet``, plus the constant mask buffer ``b`` of each self-attention; ``adept_layout`` lists
the renaming. adept's ``ResNet50`` built the pre-activation network, so its checkpoints load
into fnrl's ``ResNet50V2`` (``fnrl_network_name`` maps adept's network names to fnrl's).

Conversions are transposes, so fnrl → torch → fnrl is bit-exact. The ``torch`` optional extra
(``pip install 'fnrl[torch]'``) provides PyTorch; this module imports it only when called, and
the rest of fnrl never does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fnrl.networks import registry
from fnrl.networks._layers import BatchNorm
from fnrl.networks.bodies import LSTMCell
from fnrl.networks.modular import ModularNetwork
from fnrl.networks.modules import MultiHeadSelfAttention
from fnrl.networks.zscore import OBS_STATS
from fnrl.specs import is_continuous
from fnrl.types import Params

_INSTALL_HINT = "fnrl.networks.torch_interop needs PyTorch: pip install 'fnrl[torch]'"


def _torch() -> Any:
    """Imports torch, or raises ``ImportError`` saying how to install it."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - exercised only without torch
        raise ImportError(_INSTALL_HINT) from error
    return torch


class TorchTensor(NamedTuple):
    """Where one flax array goes in the torch ``state_dict``, and how."""

    collection: str  # flax collection: "params" or "batch_stats"
    path: tuple[str, ...]  # path inside the collection, e.g. ("trunk_screen", "conv1", "kernel")
    key: str  # torch state_dict key, e.g. "trunk_screen.conv1.weight"
    to_torch: Callable[[np.ndarray], np.ndarray]  # flax layout -> torch layout
    from_torch: Callable[[np.ndarray], np.ndarray]  # torch layout -> flax layout


def _to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor (on any device) or an array as a numpy array."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _dense_to_torch(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (1, 0))


def _conv_to_torch(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (3, 2, 0, 1))  # [kh, kw, in, out] -> [out, in, kh, kw]


def _conv_from_torch(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (2, 3, 1, 0))  # [out, in, kh, kw] -> [kh, kw, in, out]


_LEAF_NAMES: dict[type, dict[str, str]] = {
    nn.Dense: {"kernel": "weight", "bias": "bias"},
    nn.Conv: {"kernel": "weight", "bias": "bias"},
    BatchNorm: {
        "scale": "weight",
        "bias": "bias",
        "mean": "running_mean",
        "var": "running_var",
        "count": "num_batches_tracked",
    },
    nn.LayerNorm: {"scale": "weight", "bias": "bias"},
}


def _count_to_torch(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64)


_TRANSFORMS: dict[tuple[type, str], tuple[Callable, Callable]] = {
    (nn.Dense, "kernel"): (_dense_to_torch, _dense_to_torch),
    (nn.Conv, "kernel"): (_conv_to_torch, _conv_from_torch),
    (BatchNorm, "count"): (_count_to_torch, _identity),
}


def _example_inputs(network: ModularNetwork) -> tuple[tuple, dict]:
    obs = {
        key: jnp.zeros((1, *spec.shape), spec.dtype)
        for key, spec in network.spec.observations.items()
    }
    return (network.initial_carry(1), obs, jnp.ones((1,), bool)), {"train": False}


def _trace(network: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, dict, dict]:
    """Shapes of ``network.init``, the class of every submodule by path, and the (length,
    causal) of every self-attention by path, without computing."""
    classes: dict[tuple[str, ...], type] = {}
    attention: dict[tuple[str, ...], tuple[int, bool]] = {}

    def record(next_fun, call_args, call_kwargs, context):
        module = context.module
        classes[module.path] = type(module)
        if isinstance(module, MultiHeadSelfAttention) and context.method_name == "__call__":
            attention[module.path] = (int(call_args[0].shape[-2]), bool(module.causal))
        return next_fun(*call_args, **call_kwargs)

    with nn.intercept_methods(record):
        shapes = jax.eval_shape(lambda: network.init(jax.random.key(0), *args, **kwargs))
    return shapes, classes, attention


def _entry(collection: str, path: tuple[str, ...], classes: dict) -> TorchTensor:
    module_path, leaf = path[:-1], path[-1]
    cls = classes.get(module_path)
    parent = classes.get(module_path[:-1]) if module_path else None
    if parent is not None and issubclass(parent, LSTMCell) and module_path[-1] in ("ih", "hh"):
        # torch.nn.LSTMCell: weight_ih / bias_ih / weight_hh / bias_hh on the cell itself.
        base = {"kernel": "weight", "bias": "bias"}[leaf]
        key = ".".join((*module_path[:-1], f"{base}_{module_path[-1]}"))
        to_torch, from_torch = _TRANSFORMS.get((nn.Dense, leaf), (_identity, _identity))
        return TorchTensor(collection, path, key, to_torch, from_torch)
    if cls is not None and issubclass(cls, ModularNetwork) and leaf.startswith("log_std_"):
        # A Gaussian head's state-independent log-std: a bare nn.Parameter of the same name.
        return TorchTensor(collection, path, leaf, _identity, _identity)
    names = next(
        (v for k, v in _LEAF_NAMES.items() if cls is not None and issubclass(cls, k)), None
    )
    if names is None or leaf not in names:
        owner = "an unknown module" if cls is None else cls.__name__
        raise ValueError(
            f"no PyTorch layout for {collection}/{'/'.join(path)} (a {leaf!r} of {owner}); "
            "torch_interop converts Dense, Conv, BatchNorm, LayerNorm and LSTMCell leaves"
        )
    base_cls = next(k for k in _LEAF_NAMES if issubclass(cls, k))
    to_torch, from_torch = _TRANSFORMS.get((base_cls, leaf), (_identity, _identity))
    for name in module_path:
        if "." in name:
            raise ValueError(
                f"module name {name!r} contains '.', which torch state_dict keys use as the "
                "separator; rename the observation or action key"
            )
    key = ".".join((*module_path, names[leaf]))
    return TorchTensor(collection, path, key, to_torch, from_torch)


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, name)))
        else:
            flat[(*prefix, name)] = value
    return flat


class _Layout(NamedTuple):
    entries: tuple[TorchTensor, ...]  # in flax collection and path order
    templates: dict[str, Any]  # torch key -> jax.ShapeDtypeStruct of the flax array
    classes: dict[tuple[str, ...], type]  # module path -> module class
    attention: dict[tuple[str, ...], tuple[int, bool]]  # attention path -> (length, causal)


def _layout_of(network: nn.Module, args: tuple, kwargs: dict) -> _Layout:
    shapes, classes, attention = _trace(network, args, kwargs)
    entries, templates = [], {}
    for collection in sorted(set(shapes) - {OBS_STATS}):  # observation preprocessing
        for path, shape in _flatten(shapes[collection]).items():
            entry = _entry(collection, path, classes)
            entries.append(entry)
            templates[entry.key] = shape
    return _Layout(tuple(entries), templates, classes, attention)


@functools.lru_cache(maxsize=32)
def _modular_layout(network: ModularNetwork) -> _Layout:
    return _layout_of(network, *_example_inputs(network))


def _layout(network: nn.Module, args: tuple, kwargs: dict) -> _Layout:
    if not args and not kwargs:
        if not isinstance(network, ModularNetwork):
            raise ValueError(
                f"{type(network).__name__} is not a ModularNetwork: pass example inputs of its "
                "__call__ after it, e.g. to_torch_state_dict(params, module, x, train=False)"
            )
        return _modular_layout(network)
    return _layout_of(network, args, kwargs)


def _check_keys(expected: set[str], state_dict: Mapping[str, Any], problem: str) -> None:
    """Raises ``ValueError(problem + the missing and unexpected keys)`` unless ``state_dict``
    has exactly the ``expected`` keys."""
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(f"{problem}: missing keys {missing}, unexpected keys {unexpected}")


def torch_layout(network: nn.Module, *example_args: Any, **example_kwargs: Any) -> tuple:
    """The torch ``state_dict`` key, flax location and layout change of every network array.

    Args:
        network: a ``ModularNetwork``, or any flax module built from ``Dense``, ``Conv``,
            ``BatchNorm``, ``LayerNorm`` and ``LSTMCell`` leaves.
        *example_args, **example_kwargs: inputs of ``network.__call__`` (only shapes matter;
            nothing is computed); a ``ModularNetwork`` needs none.

    Returns:
        A tuple of ``TorchTensor``, in flax collection and path order.
    """
    return _layout(network, example_args, example_kwargs).entries


def to_torch_state_dict(
    params: Params, network: nn.Module, *example_args: Any, **example_kwargs: Any
) -> dict[str, Any]:
    """The ``state_dict`` of ``network``'s ``torch.nn`` twin holding ``params``.

    Args:
        params: flax variables of ``network`` (``{"params": ..., "batch_stats": ...}``).
        network: the module they belong to (see ``torch_layout``).
        *example_args, **example_kwargs: example inputs for modules other than
            ``ModularNetwork``.

    Returns:
        ``{key: torch.Tensor}`` (float32, contiguous; ``num_batches_tracked`` int64) for
        ``torch.nn.Module.load_state_dict``.

    Raises:
        ValueError: ``params`` lacks an array the network has, or has one of another shape.
        ImportError: PyTorch is not installed.
    """
    torch = _torch()
    entries, templates, *_ = _layout(network, example_args, example_kwargs)
    flat = {name: _flatten(tree) for name, tree in params.items() if isinstance(tree, Mapping)}
    state_dict = {}
    for entry in entries:
        try:
            value = flat[entry.collection][entry.path]
        except KeyError:
            raise ValueError(
                f"params lack {entry.collection}/{'/'.join(entry.path)}, which the network has; "
                "pass the variables network.init returned (with batch_stats when normalized)"
            ) from None
        value = np.asarray(value)
        if value.shape != templates[entry.key].shape:
            raise ValueError(
                f"{entry.collection}/{'/'.join(entry.path)} has shape {value.shape}, the network "
                f"expects {templates[entry.key].shape}"
            )
        state_dict[entry.key] = torch.from_numpy(
            np.array(entry.to_torch(value), order="C", copy=True)
        )
    return state_dict


def from_torch_state_dict(
    state_dict: Mapping[str, Any], network: nn.Module, *example_args: Any, **example_kwargs: Any
) -> Params:
    """Flax variables for ``network`` from its ``torch.nn`` twin's ``state_dict``.

    Args:
        state_dict: ``{key: torch.Tensor or array}``, e.g. ``torch_module.state_dict()``.
        network: the fnrl module to load into (see ``torch_layout``).
        *example_args, **example_kwargs: example inputs for modules other than
            ``ModularNetwork``.

    Returns:
        ``{"params": ..., "batch_stats": ...}`` (the collections the network has) of float32
        ``jax.Array``.

    Raises:
        ValueError: keys are missing or unexpected (the message lists them), or a tensor has
            the wrong shape (the message names it and both shapes).
    """
    entries, templates, *_ = _layout(network, example_args, example_kwargs)
    _check_keys(
        {entry.key for entry in entries},
        state_dict,
        f"the state_dict does not fit {type(network).__name__}",
    )
    variables: dict[str, Any] = {}
    for entry in entries:
        value = entry.from_torch(_to_numpy(state_dict[entry.key]))
        template = templates[entry.key]
        if value.shape != template.shape:
            raise ValueError(
                f"state_dict[{entry.key!r}] gives shape {value.shape} for "
                f"{entry.collection}/{'/'.join(entry.path)}, the network expects {template.shape}"
            )
        node = variables.setdefault(entry.collection, {})
        for name in entry.path[:-1]:
            node = node.setdefault(name, {})
        node[entry.path[-1]] = jnp.asarray(value.astype(template.dtype, copy=False))
    return variables


# adept's layout ------------------------------------------------------------------------------

# adept's 2018 network names (vision, discrete, body) -> the fnrl network of the same
# weights and computation. adept's ``ResNet50`` built ``resnet50v2()``, the pre-activation
# network, so its checkpoints load into fnrl's ``ResNet50V2``; fnrl's ``ResNet50`` is the
# post-activation network, which adept did not have.
ADEPT_VISION_NETWORKS: Mapping[str, str] = MappingProxyType(
    {
        "FourConv": "FourConv",
        "FourConvLarger": "FourConvLarger",
        "FourConvSpatialAttention": "FourConvSpatialAttention",
        "Mnih2013": "Mnih2013",
        "Nature": "Nature",
        "ResNet18": "ResNet18",
        "ResNet18V2": "ResNet18V2",
        "ResNet34": "ResNet34",
        "ResNet34V2": "ResNet34V2",
        "ResNet50": "ResNet50V2",
        "ResNet50V2": "ResNet50V2",
        "ResNet101": "ResNet101",
        "ResNet101V2": "ResNet101V2",
        "ResNet152": "ResNet152",
        "ResNet152V2": "ResNet152V2",
    }
)
ADEPT_DISCRETE_NETWORKS: Mapping[str, str] = MappingProxyType({"Identity": "Identity"})
ADEPT_NETWORK_BODIES: Mapping[str, str] = MappingProxyType(
    {name: name for name in ("Linear", "LSTM", "Mnih2013Linear", "Mnih2013LSTM")}
)


_ADEPT_NETWORKS = {
    "vision": ADEPT_VISION_NETWORKS,
    "discrete": ADEPT_DISCRETE_NETWORKS,
    "body": ADEPT_NETWORK_BODIES,
}


def _adept_table(kind: str) -> Mapping[str, str]:
    if kind not in _ADEPT_NETWORKS:
        raise ValueError(f"kind must be one of {sorted(_ADEPT_NETWORKS)}, got {kind!r}")
    return _ADEPT_NETWORKS[kind]


def fnrl_network_name(adept_name: str, kind: str = "vision") -> str:
    """The fnrl registry name of adept's network ``adept_name`` (``"ResNet50"`` → ``"ResNet50V2"``).

    Args:
        adept_name: a name from adept's ``--network-vision``, ``--network-discrete`` or
            ``--network-body`` choices.
        kind: ``"vision"``, ``"discrete"`` or ``"body"``.

    Raises:
        ValueError: adept had no such network (the message lists adept's names).
    """
    table = _adept_table(kind)
    try:
        return table[adept_name]
    except KeyError:
        raise ValueError(
            f"adept had no {kind} network {adept_name!r}; its names: {', '.join(table)}"
        ) from None


def adept_network_name(fnrl_name: str, kind: str = "vision") -> str:
    """adept's name of the fnrl network ``fnrl_name``: the same name, where adept's network of
    that name computes what fnrl's does (``ResNet50V2``; fnrl's post-activation ``ResNet50``
    has no adept twin).

    Raises:
        ValueError: adept had no such network (the message lists the fnrl names it had).
    """
    table = _adept_table(kind)
    if table.get(fnrl_name) != fnrl_name:
        names = ", ".join(name for name, fnrl in table.items() if name == fnrl)
        raise ValueError(f"adept had no {kind} network like fnrl's {fnrl_name!r}; it had {names}")
    return fnrl_name


class _AdeptLayout(NamedTuple):
    keys: dict[str, str]  # fnrl torch key -> adept key
    shapes: dict[str, tuple[int, ...]]  # adept key -> torch shape
    masks: dict[str, np.ndarray]  # adept key -> the constant attention mask adept stores


def _adept_names(
    given: Mapping[str, str] | None, fnrl_keys: Any, defaults: dict[str, str], what: str
) -> dict[str, str]:
    names = {key: key for key in fnrl_keys} | defaults | dict(given or {})
    for key, name in names.items():
        if key not in fnrl_keys:
            raise ValueError(f"{what}_names names {key!r}, which is not one of {sorted(fnrl_keys)}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(
                f"adept {what} name {name!r} for {key!r} must be a non-empty str without '.'"
            )
    return names


@functools.lru_cache(maxsize=32)
def _adept_layout(
    network: ModularNetwork, obs_names: tuple | None, action_names: tuple | None
) -> _AdeptLayout:
    if not isinstance(network, ModularNetwork):
        raise ValueError(
            f"adept's layout is that of adept's ModularNetwork; got a {type(network).__name__}"
        )
    layout = _modular_layout(network)
    spec = network.spec
    resnet_v1_50 = registry.VISION_NETWORKS["ResNet50"]
    if any(layout.classes.get((f"trunk_{key}",)) is resnet_v1_50 for key in spec.observations):
        raise ValueError(
            "fnrl's ResNet50 is the post-activation network, which adept did not have: adept's "
            "ResNet50 built the pre-activation one. Use vision_network='ResNet50V2', which "
            "loads adept's ResNet50 and ResNet50V2 checkpoints"
        )
    single = len(spec.observations) == 1 and set(spec.observations) <= {"screen", "obs"}
    obs = _adept_names(
        dict(obs_names) if obs_names else None,
        spec.observations,
        {key: "Box" for key in spec.observations} if single else {},
        "observation",
    )
    action_defaults = {}
    if set(spec.actions) == {"action"}:
        action_defaults["action"] = "Box" if is_continuous(spec.actions["action"]) else "Discrete"
    actions = _adept_names(
        dict(action_names) if action_names else None, spec.actions, action_defaults, "action"
    )
    resnets = tuple(
        registry.VISION_NETWORKS[ADEPT_VISION_NETWORKS[name]]
        for name in ADEPT_VISION_NETWORKS
        if name.startswith("ResNet")
    )
    prefixes = {f"trunk_{key}": f"trunk.pathways.{name}" for key, name in obs.items()}
    prefixes |= {f"head_{key}": f"head.heads.{name}" for key, name in actions.items()}
    prefixes["critic"] = "head.heads.critic"

    def rename(key: str) -> str:
        first, _, rest = key.partition(".")
        cls = layout.classes.get((first,))
        if cls is not None and issubclass(cls, resnets) and rest.startswith("resnet."):
            rest = "_" + rest  # adept's BaseResNet keeps its stages as ``_resnet``
        first = prefixes.get(first, first)
        return f"{first}.{rest}" if rest else first

    keys, shapes = {}, {}
    for entry in layout.entries:
        keys[entry.key] = rename(entry.key)
        zeros = np.broadcast_to(np.float32(0), layout.templates[entry.key].shape)
        shapes[keys[entry.key]] = entry.to_torch(zeros).shape
    masks = {}
    for path, (length, causal) in layout.attention.items():
        ones = np.ones((length, length), np.float32)
        masks[rename(".".join((*path, "b")))] = (np.tril(ones) if causal else ones)[None, None]
    adept_keys = [*keys.values(), *masks]
    if len(set(adept_keys)) != len(adept_keys):
        clashes = sorted({key for key in adept_keys if adept_keys.count(key) > 1})
        raise ValueError(
            f"adept key(s) {clashes} name more than one array; pass observation_names / "
            "action_names that keep the names apart"
        )
    return _AdeptLayout(keys, shapes, masks)


def _frozen(names: Mapping[str, str] | None) -> tuple | None:
    return None if names is None else tuple(sorted(names.items()))


def adept_layout(
    network: ModularNetwork,
    *,
    observation_names: Mapping[str, str] | None = None,
    action_names: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The adept ``state_dict`` key of every key of ``network``'s fnrl ``state_dict``.

    adept's 2018 ``ModularNetwork`` (``adept/networks/_base.py``) keeps one pathway per
    observation in ``trunk.pathways.<name>``, the body in ``body`` and the sorted linear heads,
    the critic's too, in ``head.heads.<name>``; its ResNets keep their stages in ``_resnet``.
    fnrl's layout says ``trunk_<key>``, ``body``, ``head_<key>``, ``critic`` and ``resnet``;
    inside the modules the names agree. adept names a single observation or action space
    after its gym class: fnrl's ``"screen"`` / ``"obs"`` observation is ``Box`` and its
    ``"action"`` is ``Discrete`` (``Box`` when continuous); Dict entries keep their names.
    Each self-attention also stores adept's constant mask buffer ``<module>.b``
    ``[1, 1, N, N]``, which this mapping leaves out (``to_adept_state_dict`` writes it). Only
    names change: with several observations, the body's first layer takes the pathways'
    features in fnrl's order (sorted keys).

    Args:
        network: the fnrl network.
        observation_names: fnrl observation key → adept name, overriding the defaults (e.g.
            ``{"obs": "Discrete"}`` for a one-hot Discrete observation).
        action_names: fnrl action key → adept name, likewise.

    Returns:
        ``{fnrl key: adept key}`` for every array of ``to_torch_state_dict``.

    Raises:
        ValueError: ``network`` uses fnrl's (post-activation) ``ResNet50``, which adept did
            not have; or the names are not keys of the spec, contain ``'.'`` or collide.
    """
    layout = _adept_layout(network, _frozen(observation_names), _frozen(action_names))
    return dict(layout.keys)


def to_adept_state_dict(
    params: Params,
    network: ModularNetwork,
    *,
    observation_names: Mapping[str, str] | None = None,
    action_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``state_dict`` of adept's own network holding ``params`` (see ``adept_layout``).

    It loads with ``load_state_dict(..., strict=True)`` into adept's ``ModularNetwork`` built
    with the same trunk, body and heads, the attention masks included.

    Args:
        params: flax variables of ``network``.
        network: the fnrl network they belong to.
        observation_names, action_names: see ``adept_layout``.

    Returns:
        ``{adept key: torch.Tensor}``.

    Raises:
        ValueError: as ``adept_layout`` and ``to_torch_state_dict``.
        ImportError: PyTorch is not installed.
    """
    layout = _adept_layout(network, _frozen(observation_names), _frozen(action_names))
    torch = _torch()
    state_dict = to_torch_state_dict(params, network)
    adept = {layout.keys[key]: tensor for key, tensor in state_dict.items()}
    adept.update({key: torch.from_numpy(mask.copy()) for key, mask in layout.masks.items()})
    return adept


def from_adept_state_dict(
    state_dict: Mapping[str, Any],
    network: ModularNetwork,
    *,
    observation_names: Mapping[str, str] | None = None,
    action_names: Mapping[str, str] | None = None,
) -> Params:
    """Flax variables for ``network`` from a ``state_dict`` of adept's own network.

    Every key must be there and no other (the attention masks ``*.attention.b`` included,
    which must hold the mask fnrl's attention applies); an adept ``ResNet50`` checkpoint loads
    into ``vision_network="ResNet50V2"`` (``fnrl_network_name``).

    Args:
        state_dict: ``{key: torch.Tensor or array}``, e.g. ``torch.load("model_<step>.pth")``.
        network: the fnrl network to load into.
        observation_names, action_names: see ``adept_layout``.

    Returns:
        ``{"params": ..., "batch_stats": ...}`` as ``from_torch_state_dict`` returns.

    Raises:
        ValueError: keys are missing or unexpected (the message lists them in adept's names), a
            tensor has the wrong shape or a mask the wrong values (the message names the key).
    """
    layout = _adept_layout(network, _frozen(observation_names), _frozen(action_names))
    _check_keys(
        {*layout.keys.values(), *layout.masks},
        state_dict,
        f"the adept state_dict does not fit the {network.vision_network} + "
        f"{network.network_body} network",
    )
    for key, mask in layout.masks.items():
        value = _to_numpy(state_dict[key])
        if value.shape != mask.shape or not np.array_equal(value, mask):
            kind = "lower-triangular (causal)" if mask[0, 0, 0, -1] == 0 else "all-ones"
            raise ValueError(
                f"state_dict[{key!r}] (shape {value.shape}) is not the {kind} attention mask "
                f"of shape {mask.shape} that the network applies"
            )
    for key, shape in layout.shapes.items():
        if tuple(state_dict[key].shape) != tuple(shape):
            raise ValueError(
                f"state_dict[{key!r}] has shape {tuple(state_dict[key].shape)}, the network "
                f"expects {tuple(shape)}"
            )
    return from_torch_state_dict(
        {fnrl_key: state_dict[key] for fnrl_key, key in layout.keys.items()}, network
    )
