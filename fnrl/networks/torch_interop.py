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

Conversions are transposes, so fnrl → torch → fnrl is bit-exact. The ``torch`` optional extra
(``pip install 'fnrl[torch]'``) provides PyTorch; this module imports it only when called, and
the rest of fnrl never does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fnrl.networks._layers import BatchNorm
from fnrl.networks.bodies import LSTMCell
from fnrl.networks.modular import ModularNetwork
from fnrl.networks.zscore import OBS_STATS
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


def _trace(network: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, dict]:
    """Shapes of ``network.init`` and the class of every submodule by path, without computing."""
    classes: dict[tuple[str, ...], type] = {}

    def record(next_fun, call_args, call_kwargs, context):
        classes[context.module.path] = type(context.module)
        return next_fun(*call_args, **call_kwargs)

    with nn.intercept_methods(record):
        shapes = jax.eval_shape(lambda: network.init(jax.random.key(0), *args, **kwargs))
    return shapes, classes


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


def _layout_of(network: nn.Module, args: tuple, kwargs: dict):
    shapes, classes = _trace(network, args, kwargs)
    entries, templates = [], {}
    for collection in sorted(set(shapes) - {OBS_STATS}):  # observation preprocessing
        for path, shape in _flatten(shapes[collection]).items():
            entry = _entry(collection, path, classes)
            entries.append(entry)
            templates[entry.key] = shape
    return tuple(entries), templates


@functools.lru_cache(maxsize=32)
def _modular_layout(network: ModularNetwork):
    return _layout_of(network, *_example_inputs(network))


def _layout(network: nn.Module, args: tuple, kwargs: dict):
    if not args and not kwargs:
        if not isinstance(network, ModularNetwork):
            raise ValueError(
                f"{type(network).__name__} is not a ModularNetwork: pass example inputs of its "
                "__call__ after it, e.g. to_torch_state_dict(params, module, x, train=False)"
            )
        return _modular_layout(network)
    return _layout_of(network, args, kwargs)


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
    return _layout(network, example_args, example_kwargs)[0]


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
    entries, templates = _layout(network, example_args, example_kwargs)
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
    entries, templates = _layout(network, example_args, example_kwargs)
    expected = {entry.key for entry in entries}
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"the state_dict does not fit {type(network).__name__}: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    variables: dict[str, Any] = {}
    for entry in entries:
        tensor = state_dict[entry.key]
        if hasattr(tensor, "detach"):
            tensor = tensor.detach().cpu().numpy()
        value = entry.from_torch(np.asarray(tensor))
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
