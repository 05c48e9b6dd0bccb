"""The Agent: an algorithm as a NamedTuple of pure functions (optax's pattern)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fnrl.distributions import Policy, mode, sample
from fnrl.losses import ValueFit, explained_variance
from fnrl.networks import STATE_COLLECTIONS, NetworkOutput, mean_over_steps, scan_apply
from fnrl.networks.zscore import RunningMoments, pool_moments
from fnrl.specs import EnvSpec
from fnrl.types import Action, Carry, Metrics, Observation, Params, PRNGKey, TrainState, Trajectory


class ActOutput(NamedTuple):
    """What the acting policy computed besides the actions, for B envs."""

    logits: dict[str, Policy]  # action name -> [B, A] logits, or a Gaussian of [B, D]
    value: jax.Array  # [B] float32


class LossOutput(NamedTuple):
    """The auxiliary output of ``Agent.loss``."""

    metrics: Metrics  # name -> [] float32 scalars
    state: Params  # updated non-trainable collections (batch-norm running statistics); {} if none
    # How many samples the loss averages over: a data-parallel update weights each shard's
    # gradient by it, so that the average over shards is the average over all samples.
    count: jax.Array | float = 1.0
    # The critic's values and targets on the batch, from which the update computes its
    # ``explained_variance`` metric; None: no such metric.
    value_fit: ValueFit | None = None


class Agent(NamedTuple):
    """Pure functions that define an agent; hyperparameters are closed over by its factory.

    Attributes:
        init: ``init(key) -> params``, flax variables for a batch of one env; the key is consumed.
        initial_carry: ``initial_carry(batch_size) -> carry``, zeros (``()`` for feed-forward).
        act: ``act(params, key, carry, obs, first) -> (actions, carry, ActOutput)`` samples one
            action per action key for a batch of B envs; ``first`` ([B] bool) marks episode
            starts, where the recurrent carry is reset; the key is consumed.
        loss: ``loss(params, batch) -> (scalar, LossOutput)``, differentiable w.r.t.
            ``params["params"]``; ``batch`` is a trajectory, or one minibatch of what
            ``prepare`` made of it.
        prepare: ``prepare(params, trajectory) -> (batch, collections)``, or None: computed
            once per learner step with the acting params, before any gradient step (PPO values
            the rollout there); ``collections`` are updated non-trainable collections, stored
            after the step. None: the loss takes the trajectory itself.
        minibatches: ``minibatches(key, batch) -> stacked``, or None: splits a prepared batch
            into minibatches stacked on a new leading axis, one gradient step each, in order;
            the key is consumed. None: one gradient step on the whole batch.
        epochs: passes over the minibatches per learner step, reshuffled each time.
        data_path: how the agent learns from the segments the modes collect (a
            :class:`DataPath`); None: from each segment once, on-policy (:data:`SEGMENTS`).
    """

    init: Callable[[PRNGKey], Params]
    initial_carry: Callable[[int], Carry]
    act: Callable[[Params, PRNGKey, Carry, Observation, jax.Array], tuple[Action, Carry, ActOutput]]
    loss: Callable[[Params, Any], tuple[jax.Array, LossOutput]]
    prepare: Callable[[Params, Trajectory], tuple[Any, Params]] | None = None
    minibatches: Callable[[PRNGKey, Any], Any] | None = None
    epochs: int = 1
    data_path: DataPath | None = None


class DataPath(NamedTuple):
    """How an agent learns from what the modes collect: its experience path.

    Every mode collects segments of T steps of B envs (``--exp-length``, ``--nb-env``) and hands
    each to the learner step this builds; it knows nothing else of the agent's experience.
    On-policy agents (A2C, PPO, V-trace) learn from each segment once (:data:`SEGMENTS`). An
    agent that keeps its own experience, such as a replay buffer (adept's DQN family, SAC;
    adept's experience caches, acme's builders, sbx's off-policy base class), keeps it in
    ``TrainState.agent_state``: its learner step adds the segment there and learns from
    samples of it, and every checkpoint saves each entry as a piece of its name, so resume
    restores it exactly.

    Attributes:
        init: ``init(params) -> agent_state``: the named pytrees of arrays the learner keeps
            besides params and optimizer state (an empty buffer, target params); ``{}``: none.
        make_update: ``make_update(agent, optimizer, *, axis_name=None) -> update``, the pure
            learner step ``update(state, trajectory) -> (state, metrics)`` with the contract of
            :func:`make_update`: scalar metrics with ``FINITE``, and with ``axis_name`` (inside
            ``shard_map``, where each device holds its part of the env batch) the same result
            as one update of the whole batch; the learner state, ``agent_state`` included, is
            replicated there, so a buffer gathers the segment over the axis before adding it.
    """

    init: Callable[[Params], dict[str, Any]]
    make_update: Callable[..., Callable[[TrainState, Trajectory], tuple[TrainState, Metrics]]]


def sample_actions(key: PRNGKey, logits: dict[str, Policy]) -> Action:
    """Samples one action per action key from its policy (:func:`fnrl.distributions.sample`).

    Args:
        key: consumed; split once into one subkey per action key (in sorted name order).
        logits: action name -> [B, A] logits, or a ``Gaussian`` of [B, D].

    Returns:
        action name -> [B] int32 actions, or [B, D] float32 ones (unclipped).
    """
    names = sorted(logits)
    keys = jax.random.split(key, len(names))
    return {name: sample(k, logits[name]) for name, k in zip(names, keys, strict=True)}


def greedy_actions(logits: dict[str, Policy]) -> Action:
    """The most probable action per action key: the logits' argmax, or a Gaussian's mean.

    adept's deterministic evaluation.

    Args:
        logits: action name -> [B, A] logits, or a ``Gaussian`` of [B, D].

    Returns:
        action name -> [B] int32 actions, or [B, D] float32 ones.
    """
    return {name: mode(policy) for name, policy in logits.items()}


def unroll(
    network: nn.Module,
    params: Params,
    carry: Carry,
    obs: Observation,
    first: jax.Array,
) -> tuple[NetworkOutput, Params]:
    """Runs ``network`` over a time-major sequence, as acting did step by step.

    A network that defines ``unroll(params, carry, obs, first) -> (outputs, collections)`` unrolls
    itself, with what it knows of its own layers and collections (the modular network runs its
    stateless trunks on all steps at once and updates its observation statistics); any other
    runs step by step in a ``lax.scan`` over time (:func:`fnrl.networks.scan_apply`). Either way
    the outputs are what ``act`` computed with ``params`` at each step: the recurrent carry is
    reset inside the network wherever ``first`` is set, exactly as during acting, so gradients
    flow through the whole segment (truncated BPTT at segment boundaries, adept's semantics), and
    every step sees the variables of ``params`` unchanged, batch-norm running statistics included.

    On the generic path the non-trainable collections receive one update per call: the mean over
    steps of what each step's call would write (:func:`fnrl.networks.mean_over_steps`), i.e. for
    batch norm one moving-average step towards the mean of the steps' batch statistics (adept
    moved them once per acting step instead; one step per update keeps them from shifting within
    the segment the loss differentiates).

    Args:
        network: a module called as ``network(carry, obs, first, train=True)``, optionally with
            its own ``unroll`` method.
        params: flax variables.
        carry: the body state before ``obs[0]``, leading axis [B].
        obs: name -> [T, B, ...] observations; for a trajectory, ``T`` is its length plus the
            bootstrap observation.
        first: [T, B] bool episode starts.

    Returns:
        The network outputs stacked over time (logits [T, B, A], value [T, B]) and the updated
        non-trainable collections.
    """
    chex.assert_rank(first, 2)
    own_unroll = getattr(network, "unroll", None)
    if callable(own_unroll):
        return own_unroll(params, carry, obs, first)
    outputs, updates = scan_apply(network, params, carry, obs, first)
    return outputs, mean_over_steps(updates)


def make_init(network: nn.Module, spec: EnvSpec) -> Callable[[PRNGKey], Params]:
    """Builds ``init(key) -> params``: the network's variables for a batch of one env of ``spec``.

    The key is consumed.
    """

    def init(key: PRNGKey) -> Params:
        obs = {name: jnp.zeros((1, *s.shape), s.dtype) for name, s in spec.observations.items()}
        first = jnp.ones((1,), bool)
        return network.init(key, network.initial_carry(1), obs, first, train=False)

    return init


def make_act(network: nn.Module) -> Callable:
    """Builds ``act(params, key, carry, obs, first) -> (actions, carry, ActOutput)``.

    Acting normalizes with batch statistics and leaves the running statistics untouched: only
    the learner's update writes them (adept acted in train mode; fnrl keeps the statistics out of
    the acting path so that ``act`` is a pure read of ``params``).
    """

    def act(params, key, carry, obs, first):
        (carry, output), _ = network.apply(
            params, carry, obs, first, train=True, mutable=list(STATE_COLLECTIONS)
        )
        actions = sample_actions(key, output.logits)
        return actions, carry, ActOutput(output.logits, output.value)

    return act


LEARNER_STREAM = 2**31 - 1  # fold_in data of learner keys; rollouts fold in update indices


def learner_key(state: TrainState) -> PRNGKey:
    """The key of the learner step ``state`` is about to take (PPO's minibatch shuffles).

    Distinct from every rollout key ``fold_in(state.key, update)``, and the same on every
    device of a data-parallel update.
    """
    return jax.random.fold_in(jax.random.fold_in(state.key, LEARNER_STREAM), state.step)


FINITE = "finite"  # the update's metric: 1.0 when its new params and optimizer state are finite
EXPLAINED_VARIANCE = "explained_variance"  # the update's metric, from ``LossOutput.value_fit``


def make_update(
    agent: Agent, optimizer: optax.GradientTransformation, *, axis_name: str | None = None
) -> Callable:
    """Builds the pure learner step ``update(state, trajectory) -> (state, metrics)``.

    Runs the agent's schedule on one trajectory: ``agent.prepare`` once, then ``agent.epochs``
    passes over ``agent.minibatches`` (one pass over the whole batch by default), each
    minibatch one gradient step: differentiate ``agent.loss`` with respect to the trainable
    parameters and apply ``optimizer``. Every step's loss sees the non-trainable collections
    as they were before the learner step; the ones ``prepare`` and the last loss returned
    (batch-norm and observation statistics) are stored after it. Metrics are averaged over the
    gradient steps and gain ``grad_norm``, the global norm of the gradient before clipping, and
    ``FINITE``: 1.0 when every floating-point value of the new params and optimizer state is
    finite, else 0.0, so that the shell never saves a diverged state. It is one fused reduction
    in the same computation, read back with the other metrics; in a data-parallel update the
    state is replicated, so every shard (and every process) computes the same value.

    When the loss returns ``LossOutput.value_fit``, metrics gain ``EXPLAINED_VARIANCE``: the
    :func:`fnrl.losses.explained_variance` of the values against their targets over the last
    pass over the batch (all its minibatches, which partition the batch: the whole batch once,
    not a mean of per-minibatch ratios), with gradients stopped. In a data-parallel update it is
    computed from sums of squares pooled over the devices, so it equals that of one update on
    the whole batch; the count-weighted mean that averages the other metrics would not, since a
    ratio of sums is not linear in the shards.

    Args:
        agent: the agent whose loss to minimize.
        optimizer: the optimizer to apply.
        axis_name: for data-parallel updates (inside ``shard_map`` over a mesh axis): gradients
            and metrics are averaged over that axis, each shard weighted by its
            ``LossOutput.count``, so the result equals one update on the whole batch; batch-norm
            statistics are averaged with equal weights, and running observation statistics
            (``RunningMoments``) pooled with their between-shard variance
            (``fnrl.networks.zscore.pool_moments``).
    """

    def pool(collections: Params) -> Params:
        if axis_name is None:
            return collections
        return jax.tree.map(
            lambda x: (
                pool_moments(x, axis_name)
                if isinstance(x, RunningMoments)
                else jax.lax.pmean(x, axis_name)
            ),
            collections,
            is_leaf=lambda x: isinstance(x, RunningMoments),
        )

    def gradient_step(params: Params, trainable: Params, opt_state: Any, batch: Any):
        def loss_fn(trainable):
            return agent.loss({**params, "params": trainable}, batch)

        (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        metrics = aux.metrics
        if axis_name is not None:
            weight = aux.count / jnp.maximum(jax.lax.psum(aux.count, axis_name), 1)
            grads, metrics = jax.lax.psum(
                jax.tree.map(lambda x: weight * x, (grads, metrics)), axis_name
            )
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
        return trainable, opt_state, metrics, aux.state, aux.value_fit

    def update(state: TrainState, trajectory: Trajectory) -> tuple[TrainState, Metrics]:
        params = state.params
        batch, collections = (
            (trajectory, {}) if agent.prepare is None else agent.prepare(params, trajectory)
        )
        trainable, opt_state = params["params"], state.opt_state
        if agent.minibatches is None and agent.epochs == 1:
            trainable, opt_state, metrics, last, fit = gradient_step(
                params, trainable, opt_state, batch
            )
        else:
            split = agent.minibatches or (lambda _, batch: jax.tree.map(lambda x: x[None], batch))

            def minibatch_step(carry, minibatch):
                trainable, opt_state, metrics, written, fit = gradient_step(
                    params, *carry, minibatch
                )
                return (trainable, opt_state), (metrics, written, fit)

            def epoch(carry, key):
                return jax.lax.scan(minibatch_step, carry, split(key, batch))

            keys = jax.random.split(learner_key(state), agent.epochs)
            (trainable, opt_state), (metrics, written, fits) = jax.lax.scan(
                epoch, (trainable, opt_state), keys
            )
            metrics = jax.tree.map(jnp.mean, metrics)
            last = jax.tree.map(lambda x: x[-1, -1], written)
            fit = jax.tree.map(lambda x: x[-1], fits)  # [minibatches, ...]: the last pass
        if fit is not None:
            metrics = {
                **metrics,
                EXPLAINED_VARIANCE: explained_variance(
                    fit.targets, fit.values, fit.mask, axis_name=axis_name
                ),
            }
        collections = pool({**collections, **last})
        params = {**params, **collections, "params": trainable}
        finite = [
            jnp.isfinite(x).all()
            for x in jax.tree.leaves((params, opt_state))
            if jnp.issubdtype(x.dtype, jnp.inexact)
        ]
        metrics = {**metrics, FINITE: jnp.all(jnp.stack(finite)).astype(jnp.float32)}
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return update


def _no_agent_state(params: Params) -> dict[str, Any]:
    del params
    return {}


SEGMENTS = DataPath(init=_no_agent_state, make_update=make_update)
"""The on-policy data path: one learner step (:func:`make_update`) per collected segment."""


def data_path(agent: Agent) -> DataPath:
    """``agent.data_path``, or :data:`SEGMENTS` where it declares none."""
    return agent.data_path or SEGMENTS


def make_learner_update(
    agent: Agent, optimizer: optax.GradientTransformation, *, axis_name: str | None = None
) -> Callable[[TrainState, Trajectory], tuple[TrainState, Metrics]]:
    """The pure learner step of ``agent``'s data path: what every mode calls on a segment.

    ``update(state, trajectory) -> (state, metrics)``: :func:`make_update` for on-policy agents,
    the agent's own for one that keeps its experience (see :class:`DataPath`).

    Args:
        agent: the agent.
        optimizer: the optimizer to apply.
        axis_name: for data-parallel updates, the mesh axis to average over.
    """
    return data_path(agent).make_update(agent, optimizer, axis_name=axis_name)


def init_train_state(
    agent: Agent, optimizer: optax.GradientTransformation, key: PRNGKey
) -> TrainState:
    """Initial parameters, optimizer state, counters and the agent state of its data path.

    Args:
        agent: the agent whose parameters to initialize.
        optimizer: the optimizer whose state to initialize.
        key: consumed; split into an init key and the run's acting key kept in the state.
    """
    init_key, act_key = jax.random.split(key)
    params = agent.init(init_key)
    opt_state = optimizer.init(params["params"])
    agent_state = data_path(agent).init(params)
    return TrainState(params, opt_state, act_key, jnp.zeros((), jnp.int32), agent_state)
