"""ModularNetwork: trunk per observation key → concat → body → one head per action key + value.

Source: adept ``adept/networks/modular_network.py`` and ``_base.py::NetworkHead`` (parity
item 8), rebuilt as one ``flax.linen`` module that processes one time step of ``B`` envs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fnrl.distributions import Gaussian, Policy, mask_policies
from fnrl.networks import registry
from fnrl.networks._layers import check_normalization, torch_dense
from fnrl.networks.bodies import reset_carry
from fnrl.networks.scan import STATE_COLLECTIONS, mean_over_steps, scan_apply
from fnrl.networks.zscore import (
    OBS_STATS,
    RunningMoments,
    init_moments,
    update_moments,
    zscore_normalize,
)
from fnrl.specs import ActionSpec, DiscreteSpec, EnvSpec, is_continuous, is_image, is_vector
from fnrl.types import Carry, Observation, Params


class NetworkOutput(NamedTuple):
    """What ``ModularNetwork`` returns for one step of ``B`` envs."""

    # action name -> [B, A] float32 unnormalized log-probabilities (a discrete action), or a
    # Gaussian of [B, D] (a continuous one)
    logits: dict[str, Policy]
    value: jax.Array  # [B] float32: the critic's state value


def build_module(cls: type[nn.Module], name: str | None = None, **options: Any) -> nn.Module:
    """``cls(**options)``, keeping only the options that ``cls`` declares as fields.

    Trunks and bodies declare what they need (``normalize``, ``hidden_size``, ``nb_head``,
    ``normalization``…); a user's module that declares fewer fields still plugs in.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in fields}, name=name)


def _validate(network: ModularNetwork) -> None:
    """Raises ``ValueError`` for a configuration ``ModularNetwork`` cannot build."""
    spec = network.spec
    if not spec.observations:
        raise ValueError("the EnvSpec has no observations; the network needs at least one")
    if not spec.actions:
        raise ValueError("the EnvSpec has no actions; the network needs at least one head")
    if network.hidden_size < 1:
        raise ValueError(f"hidden_size must be positive, got {network.hidden_size}")
    if network.nb_head < 1:
        raise ValueError(f"nb_head (--nb-head) must be at least 1, got {network.nb_head}")
    check_normalization(network.normalization)
    # Resolve every name, used or not, so that a typo fails at construction; building the
    # (unbound) modules runs their own checks, e.g. that nb_head divides the attention width.
    vision_cls = registry.get_vision_network(network.vision_network)
    discrete_cls = registry.get_discrete_network(network.discrete_network)
    body_cls = registry.get_network_body(network.network_body)
    for cls in (vision_cls, discrete_cls):  # parent=None: checked, never bound to a scope
        build_module(cls, parent=None, **network.trunk_options)
    build_module(body_cls, parent=None, **network.body_options)
    for key, obs_spec in spec.observations.items():
        if not (is_image(obs_spec) or is_vector(obs_spec)):
            raise ValueError(
                f"observation {key!r} has shape {tuple(obs_spec.shape)}: ModularNetwork takes "
                "rank-3 images (H, W, C) and rank-1 vectors (D,); reshape it in the env wrapper"
            )
        if is_image(obs_spec):
            output_size = getattr(vision_cls, "output_size", None)
            if output_size is not None:
                output_size(*obs_spec.shape[:2])  # raises if the image is too small
    for name, action_spec in spec.actions.items():
        if is_continuous(action_spec):
            if len(action_spec.shape) != 1 or action_spec.shape[0] < 1:
                raise ValueError(
                    f"continuous action {name!r} has shape {tuple(action_spec.shape)}; the "
                    "Gaussian head takes a non-empty vector (D,)"
                )
        elif action_spec.num_values < 1:
            raise ValueError(f"action {name!r} has {action_spec.num_values} values; need >= 1")
        else:
            _check_action_rules(spec, name, action_spec)


def _check_action_rules(spec: EnvSpec, name: str, action_spec: DiscreteSpec) -> None:
    """Raises ``ValueError`` for a ``mask`` or ``used_when`` that does not fit the spec."""
    if action_spec.mask is not None:
        mask = spec.observations.get(action_spec.mask)
        if mask is None or tuple(mask.shape) != (action_spec.num_values,):
            shape = None if mask is None else tuple(mask.shape)
            raise ValueError(
                f"action {name!r} is masked by observation {action_spec.mask!r}, which must be "
                f"a ({action_spec.num_values},) array; the spec has {shape}"
            )
    if action_spec.used_when is not None:
        key, used = action_spec.used_when
        selector = spec.actions.get(key)
        if not isinstance(selector, DiscreteSpec) or len(used) != selector.num_values:
            raise ValueError(
                f"action {name!r} is used when action {key!r} takes some of its values: "
                f"{key!r} must be a discrete action with {len(used)} values"
            )


def _to_float(x: jax.Array) -> jax.Array:
    """uint8 images become float32 in [0, 1] (adept's Divide255); anything else is cast."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    return x.astype(jnp.float32)


def _stats_name(key: str) -> str:
    """The ``obs_stats`` variable of observation ``key`` (prefixed: flax names are shared)."""
    return f"zscore_{key}"


def _trunk_name(key: str) -> str:
    """The trunk of observation ``key``: its params and ``batch_stats`` are under this name."""
    return f"trunk_{key}"


def _check_carry(carry: Carry, initial: Carry, body_name: str) -> None:
    """Raises ``ValueError`` naming the mismatch if ``carry`` is not shaped like ``initial``."""
    got = jax.tree.structure(carry)
    want = jax.tree.structure(initial)
    if got.num_leaves != want.num_leaves:
        raise ValueError(
            f"the carry has {got.num_leaves} arrays but the {body_name!r} body keeps "
            f"{want.num_leaves}; start from network.initial_carry(batch_size)"
        )
    for i, (leaf, start) in enumerate(
        zip(jax.tree.leaves(carry), jax.tree.leaves(initial), strict=True)
    ):
        if tuple(jnp.shape(leaf)) != tuple(start.shape):
            raise ValueError(
                f"carry array {i} has shape {tuple(jnp.shape(leaf))}, the {body_name!r} body "
                f"expects {tuple(start.shape)}; start from network.initial_carry(batch_size)"
            )


class ModularNetwork(nn.Module):
    """adept's modular actor-critic network for dict observations and dict actions.

    One trunk per observation key, in sorted key order: rank-3 ``[H, W, C]`` observations go
    through ``vision_network`` (uint8 is cast to float32 and divided by 255 first), rank-1
    ``[D]`` observations through ``discrete_network``. Their features are concatenated and fed
    to ``network_body``; then one ``Dense(A)`` head per discrete action key (sorted by name)
    gives the logits and a ``Dense(1)`` head the value (adept's ``critic``). A continuous (Box)
    action key gets a diagonal Gaussian: a ``Dense(D)`` mean and a state-independent learned
    log standard deviation (:class:`fnrl.distributions.Gaussian`). Heads use torch's default
    ``nn.Linear`` init.

    Params are ``trunk_<obs key>``, ``body``, ``head_<action name>`` (and ``log_std_<action
    name>`` for a continuous one) and ``critic``; with
    ``normalize`` the BatchNorm layers add a ``batch_stats`` collection.

    **Observation normalization.** With ``zscore_norm_env`` (adept's ``--zscore-norm-env``) each
    vector observation is normalized before its trunk with the running mean and variance of
    the observations seen so far, Stable-Baselines3's ``VecNormalize`` formula
    ``clip((x - mean) / sqrt(var + 1e-8), -10, 10)`` (``fnrl.networks.zscore``); images are left
    as they are. The statistics are ``RunningMoments`` in the ``obs_stats`` collection, one
    ``zscore_<obs key>`` per vector observation, starting at mean 0 and variance 1. Calling the
    network only reads them: the learner merges each update's new observations in with
    ``update_obs_stats`` (``unroll`` does), so acting, the loss and evaluation all normalize
    with the statistics of the params they are given.

    **Normalization in RL.** With ``normalize``, ``normalization`` chooses the layer after each
    (bias-free) conv or Dense of the trunks and Linear bodies. Batch norm's running statistics
    are part of the training state: only a call with ``train=True`` and a mutable
    ``batch_stats`` collection (the learner's update) moves them, towards the statistics of the
    batch it sees; acting applies the network without ``mutable`` and changes nothing;
    ``train=False`` (evaluation) normalizes with them. What normalizes while acting and
    learning (``train=True``):

    * ``"batch"`` (default, adept's): batch norm with the statistics of the env batch at that
      step. Outputs stay bounded (``|x - mean| / std <= sqrt(B - 1)``) however little the envs'
      observations differ, which keeps deep trunks stable from the first update. The price:
      each env's action depends on the other envs' observations, and whatever the B envs share
      (the batch mean) is invisible to the policy. Where that shared part must be controlled
      the task becomes unlearnable: on CartPole a hand-written controller that balances every
      pole for 500 steps lasts 25 steps on average when it sees batch-centred states of 16
      envs, and A2C with ``normalize`` stays below a random policy's return.
    * ``"running"``: batch norm with the running statistics, so each env's action depends on
      its own observation only and acting, learning and evaluation compute the same function
      (the first training call, before any update, normalizes with the batch and sets the
      running statistics from it). The price: a feature whose running variance is small (envs
      that all show the same screen, as Pong's do for the first frames, or CartPole's
      near-upright states) is amplified by up to ``1 / sqrt(eps)`` when the observations move:
      deep trunks can diverge (ResNet18 on Pong with 2 envs: values of -6e6 after two updates,
      where ``"batch"`` stays near 0), and A2C on CartPole oscillates between 10 and 150.
    * ``"layer"``: layer norm (Ba et al. 2016), each sample normalized over its own channels,
      and the layers before it keep their bias. No state and no coupling between envs, and
      bounded outputs; the classic-control preset uses it, with which A2C with ``normalize``
      balances CartPole for 500 steps.

    Example::

        network = ModularNetwork(spec)
        carry = network.initial_carry(B)
        variables = network.init(key, carry, obs, first, train=False)
        (carry, out), updates = network.apply(
            variables, carry, obs, first, train=True, mutable=["batch_stats"]
        )
        # The learner: a time-major segment obs [T, B, ...], first [T, B] at once.
        outputs, collections = network.unroll(variables, carry, obs_seq, first_seq)

    Attributes:
        spec: the environment's observation and action specs (per env, no batch axis).
        vision_network: registered trunk for rank-3 observations (adept ``-vn``, default
            ``FourConv``).
        discrete_network: registered trunk for rank-1 observations (default ``Identity``).
        network_body: registered body, e.g. ``Identity``, ``Linear``, ``LSTM`` or ``RMC``
            (adept ``-nb``, default ``LSTM``).
        normalize: adept's ``--normalize``: a normalization layer after the convs / Dense
            layers of trunks and Linear bodies, layer-normalized LSTM cell.
        hidden_size: width of the body (adept: 512).
        nb_head: attention heads of ``FourConvSpatialAttention`` and ``RMC`` (adept
            ``--nb-head``, default 1).
        normalization: ``"batch"``, ``"running"`` or ``"layer"``: that normalization layer
            and, for batch norm, what it normalizes with when ``train=True`` (see above).
        zscore_norm_env: normalize vector observations with running statistics (see above;
            adept's ``--zscore-norm-env``, default off).
    """

    spec: EnvSpec
    vision_network: str = "FourConv"
    discrete_network: str = "Identity"
    network_body: str = "LSTM"
    normalize: bool = True
    hidden_size: int = 512
    nb_head: int = 1
    normalization: str = "batch"
    zscore_norm_env: bool = False

    def __post_init__(self) -> None:
        _validate(self)
        super().__post_init__()

    def __hash__(self) -> int:
        # The spec holds dicts, which would make flax's generated field hash fail; hash a frozen
        # copy so the network can be a static argument of jax.jit. Equal networks hash equally.
        # Sorted: dicts with the same items compare equal whatever their insertion order.
        observations = self.spec.observations
        frozen_spec = (
            tuple(
                (k, tuple(observations[k].shape), np.dtype(observations[k].dtype))
                for k in sorted(observations)
            ),
            tuple(sorted(self.spec.actions.items())),
        )
        fields = (self.vision_network, self.discrete_network, self.network_body)
        options = (
            self.normalize,
            self.hidden_size,
            self.nb_head,
            self.normalization,
            self.zscore_norm_env,
        )
        return hash((frozen_spec, fields, options, self.name))

    @property
    def built_trunks(self) -> tuple[str, ...]:
        """The names of the trunks the observations go through (vision, then discrete)."""
        kinds = [is_image(spec) for spec in self.spec.observations.values()]
        return tuple(
            name
            for name, used in (
                (self.vision_network, any(kinds)),
                (self.discrete_network, not all(kinds)),
            )
            if used
        )

    @property
    def trunk_options(self) -> dict[str, Any]:
        """The fields a trunk may declare, with this network's values."""
        return {
            "normalize": self.normalize,
            "nb_head": self.nb_head,
            "normalization": self.normalization,
        }

    @property
    def body_options(self) -> dict[str, Any]:
        """The fields a body may declare, with this network's values."""
        return {**self.trunk_options, "hidden_size": self.hidden_size}

    @nn.nowrap
    def initial_carry(self, batch_size: int) -> Carry:
        """The body's start state for ``batch_size`` envs; ``()`` for feed-forward bodies.

        Works on an unbound module (no params needed). For ``LSTM``: zeros ``LSTMCarry(c, h)``,
        each ``[batch_size, hidden_size]`` float32; for ``RMC``: ``RMCCarry`` identity rows.
        """
        body_cls = registry.get_network_body(self.network_body)
        return body_cls.initial_carry(batch_size, self.hidden_size)

    @property
    def recurrent(self) -> bool:
        """Whether the body keeps state across steps (then adept stacks 1 frame, else 4)."""
        return registry.is_recurrent(self.network_body)

    @nn.compact
    def __call__(
        self,
        carry: Carry,
        obs: Observation | jax.Array,
        first: jax.typing.ArrayLike,
        *,
        train: bool,
        part: str = "step",
    ) -> tuple[Carry, NetworkOutput] | jax.Array:
        """One time step for ``B`` envs, or one of its two parts.

        A step is the trunks (``part="trunks"``), which see one observation each, then the
        body and heads (``part="core"``), which carry the state. A learner that has a whole
        sequence runs the trunks on all its steps at once and only the core step by step
        (:meth:`unroll`); the parts compose to exactly the step.

        Args:
            carry: the body's state before this step, leading axis ``[B]`` (``()`` if none);
                ignored by ``part="trunks"``.
            obs: observation name → ``[B, *spec.observations[name].shape]``; for
                ``part="core"``, the trunks' features ``[B, F]`` instead.
            first: ``[B]`` bool: ``obs`` starts an episode; the carry is reset to the body's
                ``initial_carry`` in those rows before the body runs (parity item 3); ignored
                by ``part="trunks"``.
            train: acting or learning: batch norm normalizes as ``normalization`` says and, when
                applied with ``mutable=["batch_stats"]``, moves the running statistics towards
                the batch's; ``False`` (evaluation) normalizes with the running statistics.
            part: ``"step"`` (default), ``"trunks"`` or ``"core"``.

        Returns:
            ``(carry, NetworkOutput)``: the new carry and logits ``[B, A]`` per action name plus
            value ``[B]``, all float32; for ``part="trunks"``, the features ``[B, F]``.

        Raises:
            ValueError: an observation is missing or not shaped as the spec says, or the carry
                is not shaped like ``initial_carry``; the message names the mismatch.
        """
        if part not in ("step", "trunks", "core"):
            raise ValueError(f"part must be 'step', 'trunks' or 'core', got {part!r}")
        if part == "core":
            return self._core(carry, jnp.asarray(obs), first, train)
        features = self._trunks(obs, train)
        if part == "trunks":
            return features
        carry, output = self._core(carry, features, first, train)
        return carry, self.mask(output, obs)

    @nn.nowrap
    def unroll(
        self, params: Params, carry: Carry, obs: Observation, first: jax.Array
    ) -> tuple[NetworkOutput, Params]:
        """Runs the network over a time-major sequence, as acting did step by step.

        What ``fnrl.agents.unroll`` calls for this network. The outputs are those of applying
        the network step by step with ``params`` (``train=True``), the recurrent carry reset
        wherever ``first`` is set, so gradients flow through the whole segment (truncated BPTT
        at segment boundaries, adept's semantics). The trunks, which carry no state, run on all
        ``T`` steps at once (``vmap`` over time: one batch of ``T * B`` images for the
        convolutions, batch statistics still per step); so do a feed-forward body and the
        heads, and only a recurrent body and its heads run step by step
        (:func:`fnrl.networks.scan.scan_apply`). Every step sees the variables of ``params``
        unchanged, batch-norm running statistics included.

        The ``batch_stats`` collection receives one update: the mean over steps of what each
        step would write (:func:`fnrl.networks.scan.mean_over_steps`), the trunks' statistics
        from the trunk pass, the body's from the body and heads pass. With ``zscore_norm_env``
        the observations ``obs[1:]`` are merged into the running observation statistics
        (:meth:`update_obs_stats`): ``obs[0]`` is the previous segment's last observation,
        which the previous update counted.

        Args:
            params: flax variables of this network.
            carry: the body state before ``obs[0]``, leading axis [B] (``()`` if none).
            obs: name -> [T, B, ...] observations; for a trajectory, ``T`` is its length plus
                the bootstrap observation.
            first: [T, B] bool episode starts.

        Returns:
            ``(outputs, collections)``: the outputs stacked over time (logits [T, B, A] per
            action name, masked as a step masks them, value [T, B]) and the updated
            non-trainable collections (``batch_stats``, ``obs_stats``; ``{}`` if none).
        """
        chex.assert_rank(first, 2)
        _, obs_stats = self.apply(
            params,
            jax.tree.map(lambda x: x[1:], obs),
            method=ModularNetwork.update_obs_stats,
            mutable=[OBS_STATS],
        )

        def apply(carry: Carry, x: Any, first: jax.Array | None, part: str) -> Any:
            return self.apply(
                params, carry, x, first, train=True, mutable=list(STATE_COLLECTIONS), part=part
            )

        features, trunk_updates = jax.vmap(lambda o: apply((), o, None, "trunks"))(obs)
        if self.recurrent:
            outputs, updates = scan_apply(self, params, carry, features, first, part="core")
        else:
            # A feed-forward body carries nothing from step to step: all T steps at once.
            (_, outputs), updates = jax.vmap(lambda x, f: apply((), x, f, "core"))(features, first)
        outputs = self.mask(outputs, obs)
        # Each pass returns the whole collection, the variables it did not use unchanged: the
        # trunks' statistics moved in the trunk pass, the others in the body and heads pass.
        trunks = {_trunk_name(key) for key in self.spec.observations}
        updates = {
            collection: {
                **variables,
                **{k: v for k, v in trunk_updates.get(collection, {}).items() if k in trunks},
            }
            for collection, variables in updates.items()
        }
        return outputs, {**mean_over_steps(updates), **obs_stats}

    @nn.nowrap
    def mask(self, output: NetworkOutput, obs: Observation) -> NetworkOutput:
        """The output with every action's masked values at ``-inf`` (its spec's ``mask``,
        :func:`fnrl.distributions.mask_policies`); a step applies it, and so must whoever runs
        ``part="core"`` on its own (:meth:`unroll` does)."""
        return output._replace(logits=mask_policies(self.spec.actions, output.logits, obs))

    @nn.nowrap
    def _trunks(self, obs: Observation, train: bool) -> jax.Array:
        """The concatenated features ``[B, F]`` of every observation's trunk."""
        missing = sorted(set(self.spec.observations) - set(obs))
        if missing:
            raise ValueError(f"observations {missing} are in the spec but not in obs")
        vision_cls = registry.get_vision_network(self.vision_network)
        discrete_cls = registry.get_discrete_network(self.discrete_network)
        keys = sorted(self.spec.observations)
        batch_size = jnp.shape(obs[keys[0]])[0] if jnp.ndim(obs[keys[0]]) else None
        features = []
        for key in keys:
            obs_spec = self.spec.observations[key]
            x = jnp.asarray(obs[key])
            expected = (batch_size, *obs_spec.shape)
            if x.shape != expected:
                raise ValueError(
                    f"observation {key!r} has shape {x.shape}, expected {expected}: "
                    f"[B={batch_size}] envs of {tuple(obs_spec.shape)} as the spec says"
                )
            x = _to_float(x)
            if self._normalizes(key):
                stats = self.variable(OBS_STATS, _stats_name(key), init_moments, obs_spec.shape)
                x = zscore_normalize(stats.value, x)
            trunk_cls = vision_cls if is_image(obs_spec) else discrete_cls
            trunk = build_module(trunk_cls, name=_trunk_name(key), **self.trunk_options)
            features.append(trunk(x, train=train))
        return jnp.concatenate(features, axis=-1)

    @nn.nowrap
    def _normalizes(self, key: str) -> bool:
        return self.zscore_norm_env and is_vector(self.spec.observations[key])

    def update_obs_stats(self, obs: Observation) -> None:
        """Merges new observations into the running statistics of ``zscore_norm_env``.

        Apply with ``method="update_obs_stats", mutable=["obs_stats"]``; the updated collection
        is the second output (``{}`` without ``zscore_norm_env`` or vector observations).

        Args:
            obs: observation name -> ``[*N, *spec.observations[name].shape]``, samples along
                every leading axis (e.g. ``[T, B, D]``); each counts once.
        """
        for key in sorted(self.spec.observations):
            if not self._normalizes(key):
                continue
            shape = tuple(self.spec.observations[key].shape)
            x = jnp.asarray(obs[key])
            if x.ndim <= len(shape) or x.shape[x.ndim - len(shape) :] != shape:
                raise ValueError(
                    f"observation {key!r} has shape {x.shape}, expected samples of {shape} "
                    "along leading axes"
                )
            name = _stats_name(key)
            moments: RunningMoments = self.get_variable(OBS_STATS, name)
            self.put_variable(OBS_STATS, name, update_moments(moments, _to_float(x)))

    @nn.nowrap
    def _core(
        self, carry: Carry, x: jax.Array, first: jax.typing.ArrayLike, train: bool
    ) -> tuple[Carry, NetworkOutput]:
        """The body (its carry reset where ``first``) and the heads on features ``x``."""
        first = jnp.asarray(first)
        if first.shape != x.shape[:1]:
            raise ValueError(
                f"first must be [B] bool for the B={x.shape[0]} envs observed, got shape "
                f"{first.shape}"
            )
        batch_size = first.shape[0]
        body_cls = registry.get_network_body(self.network_body)
        initial = body_cls.initial_carry(batch_size, self.hidden_size)
        _check_carry(carry, initial, self.network_body)
        body = build_module(body_cls, name="body", **self.body_options)
        carry, x = body(reset_carry(carry, first, initial), x, train=train)

        actions = self.spec.actions
        logits = {name: self._head(name, actions[name], x) for name in sorted(actions)}
        value = torch_dense(1, x.shape[-1], name="critic")(x)[:, 0]
        return carry, NetworkOutput(logits=logits, value=value)

    @nn.nowrap
    def _head(self, name: str, spec: ActionSpec, x: jax.Array) -> Policy:
        """Action ``name``'s policy on the body's features ``x`` ``[B, W]``.

        A discrete action gets ``Dense(A)`` logits; a continuous one a ``Dense(D)`` mean and a
        state-independent log standard deviation ``log_std_<name>``, a learned ``[D]`` vector
        starting at 0 (standard deviation 1, as in OpenAI Baselines' and CleanRL's PPO).
        """
        if not is_continuous(spec):
            return torch_dense(spec.num_values, x.shape[-1], name=f"head_{name}")(x)
        mean = torch_dense(spec.shape[0], x.shape[-1], name=f"head_{name}")(x)
        log_std = self.param(f"log_std_{name}", nn.initializers.zeros, spec.shape, jnp.float32)
        return Gaussian(mean, jnp.broadcast_to(log_std, mean.shape))


def count_params(params: chex.ArrayTree) -> int:
    """Number of scalars in a params tree (adept prints this as its parameter count).

    Pass ``variables["params"]``: torch counts ``parameters()``, not BatchNorm running buffers.
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
