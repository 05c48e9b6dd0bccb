"""fnrl against Stable-Baselines3: A2C throughput side by side, in one run, on one machine.

For each env id (CartPole-v1 and PongNoFrameskip-v4 by default), with the same env count
(``--nb-env``, 16), rollout length (``--exp-length``, 5), network and hyperparameters on both
sides, each row measures:

* ``envpool (raw)``: the envpool pool alone, made with the settings fnrl uses (Atari: adept's
  DeepMind preprocessing, frame skip 4, one grey 84x84 frame per step), stepping uniform random
  actions; no fnrl or SB3 code. The ceiling every other row is divided by.
* ``env adapter``: fnrl's env for that id (``fnrl.parallel.local.make_training_env``: the same
  pool plus the host-side frame stack, reward clipping and episode tracking) stepping random
  actions. Both ``fnrl host`` and ``SB3 A2C`` step exactly this env, so their gap to this row
  is the cost of each library's own code.
* ``fnrl host`` / ``fnrl compiled``: ``fnrl.parallel.local.train_local`` with
  ``rollout="host"`` and ``rollout="compiled"`` and the evaluation thread off
  (``nb_eval_env=0``), speed after its first update (``RunResult.steady_frames_per_second``:
  compilation excluded; logging, checkpoints and the preset's scheduled evaluations included:
  on CartPole 10 greedy games every 25k steps, played beside training), each after an untimed
  warm-up run.
  The field is passed as given; the notes column names the phase that bounded the run
  (``rollout+learner`` where the rollout and the update run as one computation).
* ``loop: ...``: fnrl's three loop shapes without the run shell (no logging, no checkpoints),
  on the same agent, in median ms per update: ``host`` (the host loop, then the jitted update),
  ``rollout apart`` (the compiled rollout, then the jitted update as a second call; the
  trajectory stays on the device) and ``fused`` (:class:`fnrl.parallel.rollout.CompiledTrainer`:
  rollouts and updates in one call, as many per call as it picks). ``fused`` is what
  ``rollout="compiled"`` runs; the gap between the last two is what fusing buys.
* ``SB3 A2C``: ``stable_baselines3.A2C.learn(total_timesteps=...)`` after a warm-up ``learn``
  of ``--warmup-updates`` updates (model setup and first calls excluded). SB3 steps the env
  adapter above through :class:`EnvpoolVecEnv`, a ``VecEnv`` written here, so the simulator
  and its preprocessing are identical for both libraries (SB3's own Atari wrappers are not
  used). envpool resets an env on the step *after* its episode ends, where SB3 expects the
  reset observation in the same step; the adapter passes envpool's behaviour through, so SB3
  learns from one extra transition per episode (its action ignored, reward 0). That changes
  what it learns a little, not how fast it steps: every library spends one pool step per
  agent step.
* ``learner``: the learner update alone on one identical batch of ``T x B`` transitions
  (Pong: 5 x 16 stacks of four 84x84 uint8 frames, plus the 16 bootstrap observations), in
  median milliseconds per update and the frames/s it would sustain if experience were free.
  fnrl: ``make_update`` on ``make_agent`` / ``make_network`` with ``make_training_optimizer``,
  jitted once with the state donated, repeated on a batch already on the device, blocking on the
  result (``jax.block_until_ready``) before reading the clock. PyTorch: what one SB3 A2C update
  computes, on SB3's own policy object: the value of the bootstrap observations (no gradient, as
  SB3's rollout collection does), GAE over the rollout, the policy forward on the batch
  (``evaluate_actions``), the A2C loss, backward, gradient clipping and the RMSprop step;
  ``torch.set_num_threads`` is set to the machine's core count. fnrl's update computes the values of
  all ``T + 1`` observations itself, where SB3 reuses those computed while acting, so fnrl does a
  little more work per update.

Networks (both sides must have the same parameter count; the table prints both):

* CartPole: fnrl's classic-control preset, the ``Identity`` trunk and the ``Linear`` body (one
  Dense 512 + ReLU) shared by the policy and value heads. SB3's ``net_arch`` cannot share a
  hidden layer between the two heads any more, so the SB3 side puts the same Dense 512 + ReLU
  in a features extractor (:class:`LinearFeatures`) shared by both heads, with
  ``net_arch=[]``.
* Pong: the Nature DQN network, fnrl's ``--vision-network Nature --network-body Linear
  --normalize false`` and SB3's ``CnnPolicy`` (``NatureCNN``, 512 features, ``net_arch=[]``).

Hyperparameters, both sides: RMSprop lr 7e-4, alpha 0.99, eps 1e-5 (outside the square root,
as PyTorch), gamma 0.99, GAE lambda 1.0, entropy 0.01, value coefficient 0.5 (fnrl's value loss
is half the squared error), gradients clipped to norm 0.5, advantages not normalized.

Frames count the Atari frame skip (4 frames per agent step), as adept did; on CartPole a frame
is a step. Each row measures for about ``--seconds``; each training run is sized by an untimed
warm-up run of ``--warmup-updates`` updates before it (fnrl: a whole short ``train_local`` run,
SB3: a first ``learn`` on the same model). Ratios vary across machines much less than absolute
numbers; on a machine shared with other work, both vary.

Install and run:

    pip install -e ".[bench]"
    python benchmarks/peers.py --out peers.json --plot peers.png
    python benchmarks/peers.py --seconds 5 --warmup-updates 3 --min-updates 5 \
        --out /tmp/peers.json --plot /tmp/peers.png   # a quick check
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

try:  # the bench extra's, checked first so that even -h says what is missing
    import stable_baselines3
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import VecEnv
    from torch.nn import functional as F
except ImportError as error:
    sys.exit(
        f'benchmarks/peers.py needs {error.name}, of the bench extra: pip install -e ".[bench]"'
    )

import envpool
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from fnrl.agents import init_train_state, make_update
from fnrl.config import OptimizerSettings, TrainConfig, make_config
from fnrl.envs import BatchedEnv, atari_task_id
from fnrl.networks import count_params
from fnrl.parallel.local import make_agent, make_training_env, make_training_optimizer, train_local
from fnrl.parallel.rollout import (
    CompiledTrainer,
    PhaseTimer,
    collect,
    make_compiled_rollout,
)
from fnrl.specs import EnvSpec, is_image
from fnrl.types import Trajectory

# The settings both libraries train with (SB3's A2C defaults, which are also fnrl's for these).
LEARNING_RATE = 7e-4
RMSPROP_ALPHA = 0.99
RMSPROP_EPS = 1e-5
DISCOUNT = 0.99
GAE_LAMBDA = 1.0
ENTROPY_COEF = 0.01
VALUE_COEF = 0.5  # fnrl's value loss is 0.5 * squared error: the same weight
MAX_GRAD_NORM = 0.5
HIDDEN_SIZE = 512

# The envpool settings of fnrl.envs.make_atari_env for Atari (adept's DeepMind preprocessing).
ATARI_POOL_SETTINGS: dict[str, Any] = {
    "max_episode_steps": TrainConfig.max_episode_length,
    "frame_skip": TrainConfig.skip_rate,
    "stack_num": 1,
    "noop_max": 30,
    "episodic_life": True,
    "zero_discount_on_life_loss": False,
    "reward_clip": False,
    "use_fire_reset": True,
    "repeat_action_probability": 0.0,
    "full_action_space": False,
    "img_height": 84,
    "img_width": 84,
    "gray_scale": True,
    "use_inter_area_resize": True,
}

RUNS = ("envpool (raw)", "env adapter", "fnrl host", "fnrl compiled", "SB3 A2C")


# --------------------------------------------------------------------------- configuration


def fnrl_config(env_id: str, nb_env: int, exp_length: int, seed: int) -> TrainConfig:
    """The fnrl settings of the comparison: CartPole's preset, the Nature network on Atari."""
    settings: dict[str, Any] = {
        "env_id": env_id,
        "nb_env": nb_env,
        "exp_length": exp_length,
        "seed": seed,
        "learning_rate": LEARNING_RATE,
        "discount": DISCOUNT,
        "tau": GAE_LAMBDA,
        "entropy_coef": ENTROPY_COEF,
        "normalize_advantage": False,
        "max_grad_norm": MAX_GRAD_NORM,
        "network_body": "Linear",
        "normalize": False,
        "nb_eval_env": 0,
    }
    if atari_task_id(env_id) is not None:
        settings["vision_network"] = "Nature"
    return make_config(**settings)


def network_name(config: TrainConfig, spec: EnvSpec) -> str:
    """``trunk + body`` of the network ``config`` builds for ``spec``."""
    images = any(is_image(s) for s in spec.observations.values())
    trunk = config.vision_network if images else config.discrete_network
    return f"{trunk} + {config.network_body}"


class LinearFeatures(BaseFeaturesExtractor):
    """fnrl's ``Identity`` trunk and ``Linear`` body for SB3: ``Linear(D, 512) → ReLU``.

    Shared by SB3's policy and value heads (``share_features_extractor=True``), as fnrl's body
    is shared by its heads. Source: adept ``adept/networks/bodies.py::LinearBody``.
    """

    def __init__(self, observation_space: gymnasium.spaces.Box, features_dim: int = HIDDEN_SIZE):
        super().__init__(observation_space, features_dim)
        self.linear = torch.nn.Linear(int(np.prod(observation_space.shape)), features_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` float32 → ``[N, 512]`` float32."""
        return F.relu(self.linear(observations.flatten(1)))


def make_sb3(venv: VecEnv, exp_length: int, seed: int) -> A2C:
    """SB3's A2C with the same network and hyperparameters as :func:`fnrl_config`."""
    if (
        isinstance(venv.observation_space, gymnasium.spaces.Box)
        and venv.observation_space.dtype == np.uint8
    ):
        policy, policy_kwargs = "CnnPolicy", {"net_arch": []}  # NatureCNN, 512 features
    else:
        policy = "MlpPolicy"
        policy_kwargs = {
            "features_extractor_class": LinearFeatures,
            "features_extractor_kwargs": {"features_dim": HIDDEN_SIZE},
            "share_features_extractor": True,
            "net_arch": [],
        }
    return A2C(
        policy,
        venv,
        learning_rate=LEARNING_RATE,
        n_steps=exp_length,
        gamma=DISCOUNT,
        gae_lambda=GAE_LAMBDA,
        ent_coef=ENTROPY_COEF,
        vf_coef=VALUE_COEF,
        max_grad_norm=MAX_GRAD_NORM,
        rms_prop_eps=RMSPROP_EPS,  # alpha 0.99 is SB3's RMSprop default
        use_rms_prop=True,
        normalize_advantage=False,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
    )


# --------------------------------------------------------------------------- the SB3 VecEnv


class EnvpoolVecEnv(VecEnv):
    """An fnrl :class:`~fnrl.envs.BatchedEnv` (one envpool pool) as an SB3 ``VecEnv``.

    Impure: steps the envs. Images are handed over channels-first (``[B, C, H, W]`` uint8, what
    ``NatureCNN`` takes), vectors as they are. Autoreset stays envpool's (next-step): the
    observation of a ``done`` step is the episode's last one (also given as
    ``info["terminal_observation"]`` where a time limit cut the episode, for SB3's bootstrap),
    and the following step returns the reset observation with reward 0.
    """

    def __init__(self, env: BatchedEnv) -> None:
        if len(env.spec.observations) != 1 or len(env.spec.actions) != 1:
            raise ValueError("EnvpoolVecEnv takes envs with one observation and one action")
        self.env = env
        ((self._obs_key, obs_spec),) = env.spec.observations.items()
        ((self._action_key, action_spec),) = env.spec.actions.items()
        self._image = is_image(obs_spec)
        if self._image:
            height, width, channels = obs_spec.shape
            space = gymnasium.spaces.Box(0, 255, (channels, height, width), np.uint8)
        else:
            bound = np.full(obs_spec.shape, np.inf, obs_spec.dtype)
            space = gymnasium.spaces.Box(-bound, bound, dtype=obs_spec.dtype)
        super().__init__(env.num_envs, space, gymnasium.spaces.Discrete(action_spec.num_values))
        self._actions: np.ndarray | None = None

    def _obs(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        x = obs[self._obs_key]
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self._image else x

    def reset(self) -> np.ndarray:
        """Resets every env; the first observations ``[B, ...]``."""
        return self._obs(self.env.reset().obs)

    def step_async(self, actions: np.ndarray) -> None:
        """Stores the ``[B]`` actions for :meth:`step_wait`."""
        self._actions = np.asarray(actions, np.int32).reshape(self.num_envs)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Steps every env: observations, learning rewards, dones ``[B]`` and one info each."""
        timestep = self.env.step({self._action_key: self._actions})
        obs = self._obs(timestep.obs)
        dones = timestep.terminated | timestep.truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(timestep.truncated):
            infos[i]["TimeLimit.truncated"] = True
            infos[i]["terminal_observation"] = obs[i]
        episode = timestep.episode
        for i in np.flatnonzero(episode.done):
            infos[i]["episode"] = {"r": float(episode.returns[i]), "l": int(episode.length[i])}
        return obs, np.asarray(timestep.reward, np.float32), dones, infos

    def close(self) -> None:
        """Stops the envs."""
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Per-env attributes: only ``render_mode`` (None: these envs do not render)."""
        if attr_name != "render_mode":
            raise AttributeError(f"EnvpoolVecEnv has no per-env attribute {attr_name!r}")
        return [None] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """The envs are one pool: nothing to set per env."""
        raise AttributeError(f"EnvpoolVecEnv cannot set the per-env attribute {attr_name!r}")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list:
        """The envs are one pool: no per-env methods."""
        raise AttributeError(f"EnvpoolVecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """No gymnasium wrappers: envpool preprocesses inside the pool."""
        del wrapper_class
        return [False] * len(self._get_indices(indices))


# --------------------------------------------------------------------------- env rows


def _time_loop(step: Callable[[], None], seconds: float) -> tuple[int, float]:
    """Calls ``step`` until ``seconds`` have passed; the number of calls and the time taken."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls == 0:
        step()
        calls += 1
    return calls, elapsed


def raw_envpool_fps(env_id: str, nb_env: int, seconds: float, seed: int) -> float:
    """Frames/s of the bare envpool pool fnrl builds for ``env_id``, random actions."""
    atari = atari_task_id(env_id)
    settings = ATARI_POOL_SETTINGS if atari else {}
    pool = envpool.make(
        atari or env_id,
        env_type="gymnasium",
        num_envs=nb_env,
        batch_size=nb_env,
        seed=seed,
        **settings,
    )
    try:
        rng = np.random.default_rng(seed)
        num_actions = pool.action_space.n
        pool.reset()
        steps, elapsed = _time_loop(
            lambda: pool.step(rng.integers(0, num_actions, nb_env).astype(np.int32)), seconds
        )
        frame_skip = settings.get("frame_skip", 1)
    finally:
        pool.close()
    return steps * nb_env * frame_skip / elapsed


def env_adapter_fps(config: TrainConfig, seconds: float) -> float:
    """Frames/s of fnrl's env for ``config`` (what fnrl host and SB3 step), random actions."""
    env = make_training_env(config, config.nb_env, config.seed)
    try:
        rng = np.random.default_rng(config.seed)
        ((name, action_spec),) = env.spec.actions.items()
        env.reset()

        def step() -> None:
            env.step({name: rng.integers(0, action_spec.num_values, env.num_envs, np.int32)})

        steps, elapsed = _time_loop(step, seconds)
        return steps * env.num_envs * env.frames_per_step / elapsed
    finally:
        env.close()


# --------------------------------------------------------------------------- learner rows


class Batch(NamedTuple):
    """One rollout of T steps of B envs, as numpy, fed identically to both learners."""

    obs: np.ndarray  # [T + 1, B, *obs_shape]: uint8 [84, 84, 4] screens or float32 states
    actions: np.ndarray  # [T, B] int32
    rewards: np.ndarray  # [T, B] float32
    values: np.ndarray  # [T, B] float32: the values computed while acting (SB3 reuses them)


def make_batch(spec: EnvSpec, exp_length: int, nb_env: int, seed: int) -> Batch:
    """Random observations, actions and rewards shaped as ``spec`` says; no episode ends."""
    rng = np.random.default_rng(seed)
    (obs_spec,) = spec.observations.values()
    (action_spec,) = spec.actions.values()
    shape = (exp_length + 1, nb_env, *obs_spec.shape)
    if obs_spec.dtype == np.uint8:
        obs = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        obs = rng.standard_normal(shape).astype(obs_spec.dtype)
    return Batch(
        obs=obs,
        actions=rng.integers(0, action_spec.num_values, (exp_length, nb_env), dtype=np.int32),
        rewards=rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), (exp_length, nb_env)),
        values=rng.standard_normal((exp_length, nb_env)).astype(np.float32),
    )


def _median_ms(step: Callable[[], None], seconds: float, min_repeats: int = 10) -> float:
    """Median wall time of ``step`` in ms, repeated for ``seconds`` (at least ``min_repeats``)."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < min_repeats:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def fnrl_learner(config: TrainConfig, spec: EnvSpec, batch: Batch, seconds: float) -> dict:
    """Median ms of fnrl's compiled A2C update on ``batch``, and the network's size."""
    agent = make_agent(config, spec)
    optimizer = make_training_optimizer(config.section(OptimizerSettings))
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(config.seed))
    params = count_params(state.params["params"])
    (obs_key,) = spec.observations
    (action_key, action_spec) = next(iter(spec.actions.items()))
    steps, nb_env = batch.actions.shape
    no_end = np.zeros((steps, nb_env), bool)
    trajectory = jax.device_put(
        Trajectory(
            obs={obs_key: batch.obs},
            first=np.zeros((steps + 1, nb_env), bool),
            actions={action_key: batch.actions},
            rewards=batch.rewards,
            terminated=no_end,
            truncated=no_end,
            behaviour_logits={
                action_key: np.zeros((steps, nb_env, action_spec.num_values), np.float32)
            },
            initial_carry=agent.initial_carry(nb_env),
        )
    )
    update = jax.jit(make_update(agent, optimizer), donate_argnums=0)
    start = time.perf_counter()
    state = jax.block_until_ready(update(state, trajectory))[0]
    compile_seconds = time.perf_counter() - start

    def step() -> None:
        nonlocal state
        state, metrics = update(state, trajectory)
        jax.block_until_ready((state, metrics))

    return {
        "ms_per_update": _median_ms(step, seconds),
        "compile_seconds": compile_seconds,
        "params": params,
        "loss_finite": bool(jnp.isfinite(update(state, trajectory)[1]["total_loss"])),
    }


def _gae(
    rewards: torch.Tensor, values: torch.Tensor, last_values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SB3's ``RolloutBuffer.compute_returns_and_advantage`` without episode ends: ``[T, B]``."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(last_values)
    for t in reversed(range(rewards.shape[0])):
        next_values = last_values if t == rewards.shape[0] - 1 else values[t + 1]
        delta = rewards[t] + DISCOUNT * next_values - values[t]
        last = delta + DISCOUNT * GAE_LAMBDA * last
        advantages[t] = last
    return advantages, advantages + values


def torch_learner(model: A2C, batch: Batch, seconds: float) -> dict:
    """Median ms of what one SB3 A2C update computes on ``batch``, and the policy's size."""
    policy = model.policy
    policy.set_training_mode(True)
    steps, nb_env = batch.actions.shape
    obs = torch.as_tensor(batch.obs)
    if obs.dtype == torch.uint8:
        obs = obs.permute(0, 1, 4, 2, 3).contiguous()  # channels-first, as NatureCNN takes
    rollout_obs = obs[:steps].reshape(steps * nb_env, *obs.shape[2:])
    bootstrap_obs = obs[steps]
    actions = torch.as_tensor(batch.actions, dtype=torch.long).flatten()
    rewards = torch.as_tensor(batch.rewards)
    values = torch.as_tensor(batch.values)

    def step() -> None:
        # A2C.collect_rollouts: the bootstrap value, then the buffer's GAE.
        with torch.no_grad():
            last_values = policy.predict_values(bootstrap_obs).flatten()
        advantages, returns = _gae(rewards, values, last_values)
        # A2C.train: one gradient step over the whole rollout.
        new_values, log_prob, entropy = policy.evaluate_actions(rollout_obs, actions)
        policy_loss = -(advantages.flatten() * log_prob).mean()
        value_loss = F.mse_loss(returns.flatten(), new_values.flatten())
        loss = policy_loss - ENTROPY_COEF * entropy.mean() + VALUE_COEF * value_loss
        policy.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
        policy.optimizer.step()

    step()  # first call: allocations
    return {
        "ms_per_update": _median_ms(step, seconds),
        "params": sum(p.numel() for p in policy.parameters()),
    }


# --------------------------------------------------------------------------- training rows


def fnrl_training(config: TrainConfig, rollout: str, updates: int) -> dict:
    """``train_local`` with ``rollout`` for ``updates + 1`` updates; speed after the first."""
    budget = (updates + 1) * config.nb_env * config.exp_length
    with tempfile.TemporaryDirectory() as log_dir:
        config = dataclasses.replace(
            config, rollout=rollout, max_train_steps=budget, log_dir=log_dir
        )
        try:
            result = train_local(config, show_progress=False)
        except (ValueError, NotImplementedError) as error:  # a mode local cannot run yet
            return {"frames_per_second": math.nan, "error": f"{type(error).__name__}: {error}"}
    return {
        "frames_per_second": result.steady_frames_per_second,
        "updates": result.updates,
        "frames_per_step": result.frames // max(result.env_steps, 1),
        "warmup_seconds": result.warmup_seconds,
        "bound": result.bound,
        "phase_seconds": result.phase_seconds,
    }


def sb3_training(
    config: TrainConfig, frames_per_step: int, seconds: float, warmup_updates: int, min_updates: int
) -> dict:
    """SB3 A2C ``learn`` for about ``seconds`` after a warm-up ``learn``; steps and frames/s."""
    venv = EnvpoolVecEnv(make_training_env(config, config.nb_env, config.seed))
    try:
        model = make_sb3(venv, config.exp_length, config.seed)
        per_update = config.nb_env * config.exp_length
        start = time.perf_counter()
        model.learn(total_timesteps=warmup_updates * per_update)
        warmup_seconds = time.perf_counter() - start
        warmup_rate = model.num_timesteps / warmup_seconds
        updates = max(min_updates, round(seconds * warmup_rate / per_update))
        before = model.num_timesteps
        start = time.perf_counter()
        model.learn(total_timesteps=updates * per_update, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
        steps = model.num_timesteps - before
    finally:
        venv.close()
    return {
        "frames_per_second": steps * frames_per_step / elapsed,
        "steps_per_second": steps / elapsed,
        "updates": steps // per_update,
        "warmup_seconds": warmup_seconds,
    }


def fnrl_training_for(
    config: TrainConfig, rollout: str, seconds: float, warmup_updates: int, min_updates: int
) -> dict:
    """``train_local`` with ``rollout`` for about ``seconds`` after its first update.

    A first, short run of ``warmup_updates`` updates measures the speed that sizes the timed
    run (a new run compiles again: its first update is excluded from its speed too).
    """
    warmup = fnrl_training(config, rollout, warmup_updates)
    if "error" in warmup:
        return warmup
    frames_per_update = config.nb_env * config.exp_length * warmup["frames_per_step"]
    rate = warmup["frames_per_second"]
    updates = min_updates if math.isnan(rate) else round(seconds * rate / frames_per_update)
    print(f"{config.env_id}: fnrl {rollout}, {max(updates, min_updates)} updates", flush=True)
    result = fnrl_training(config, rollout, max(updates, min_updates))
    return {**result, "warmup_frames_per_second": rate}


def fnrl_loops(config: TrainConfig, seconds: float) -> dict[str, float]:
    """Median ms per update of the host loop, the compiled rollout apart and the fused trainer."""
    env = make_training_env(config, config.nb_env, config.seed)
    agent = make_agent(config, env.spec)
    optimizer = make_training_optimizer(config.section(OptimizerSettings))
    pure_update = make_update(agent, optimizer)
    update = jax.jit(pure_update, donate_argnums=0)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(config.seed))
    loop = {"timestep": env.reset(), "carry": agent.initial_carry(config.nb_env), "index": 0}
    act = jax.jit(agent.act)
    handle, xla_step = env.xla()
    rollout = jax.jit(make_compiled_rollout(xla_step, agent.act, config.exp_length))
    trainer = CompiledTrainer(env, agent.act, pure_update, config.exp_length, PhaseTimer())
    loop["handle"] = handle

    def host() -> None:
        nonlocal state
        result = collect(
            env, act, state.params, jax.random.PRNGKey(loop["index"]), loop["timestep"],
            loop["carry"], config.exp_length, PhaseTimer(),
        )  # fmt: skip
        state, metrics = update(state, result.trajectory)
        loop.update(timestep=result.timestep, carry=result.carry, index=loop["index"] + 1)
        jax.block_until_ready(metrics)

    def apart() -> None:
        nonlocal state
        key = jax.random.PRNGKey(loop["index"])
        handle, trajectory, timestep, carry, _ = rollout(
            loop["handle"], state.params, key, loop["timestep"], loop["carry"]
        )
        state, metrics = update(state, trajectory)
        loop.update(handle=handle, timestep=timestep, carry=carry, index=loop["index"] + 1)
        jax.block_until_ready(metrics)

    counts = []

    def fused() -> None:
        nonlocal state
        count = trainer.suggested_count()
        state, timestep, carry, _ = trainer(
            state, loop["timestep"], loop["carry"], loop["index"], count
        )
        loop.update(timestep=timestep, carry=carry, index=loop["index"] + count)
        counts.append(count)

    result = {}
    try:
        for name, step in (("host", host), ("rollout apart", apart)):
            step()  # compiles
            result[name] = _median_ms(step, seconds)
        fused()  # compiles
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 10:
            start = time.perf_counter()
            fused()
            times.append((time.perf_counter() - start) / counts[-1])
        result["fused"] = 1e3 * statistics.median(times)
        result["fused_updates_per_call"] = statistics.median(counts[1:])
    finally:
        env.close()
    return result


# --------------------------------------------------------------------------- one env


def measure_env(env_id: str, args: argparse.Namespace) -> dict:
    """Every row of the comparison for ``env_id``."""
    config = fnrl_config(env_id, args.nb_env, args.exp_length, args.seed)
    env = make_training_env(config, config.nb_env, config.seed)
    spec, frames_per_step = env.spec, env.frames_per_step
    env.close()
    frames_per_update = config.nb_env * config.exp_length * frames_per_step
    print(f"{env_id}: env rows", flush=True)
    raw_fps = raw_envpool_fps(env_id, config.nb_env, args.seconds, config.seed)
    adapter_fps = env_adapter_fps(config, args.seconds)

    print(f"{env_id}: learner rows", flush=True)
    batch = make_batch(spec, config.exp_length, config.nb_env, config.seed)
    fnrl_update = fnrl_learner(config, spec, batch, args.seconds)
    venv = EnvpoolVecEnv(make_training_env(config, config.nb_env, config.seed))
    try:
        torch_update = torch_learner(
            make_sb3(venv, config.exp_length, config.seed), batch, args.seconds
        )
    finally:
        venv.close()

    runs: dict[str, dict] = {
        "envpool (raw)": {"frames_per_second": raw_fps},
        "env adapter": {"frames_per_second": adapter_fps},
    }
    for rollout in ("host", "compiled"):
        print(f"{env_id}: fnrl {rollout}, warm-up", flush=True)
        runs[f"fnrl {rollout}"] = fnrl_training_for(
            config, rollout, args.seconds, args.warmup_updates, args.min_updates
        )
    print(f"{env_id}: fnrl loop shapes", flush=True)
    loops = fnrl_loops(config, args.seconds)
    for name in ("host", "rollout apart", "fused"):
        runs[f"loop: {name}"] = {
            "frames_per_second": frames_per_update / (loops[name] / 1e3),
            "ms_per_update": loops[name],
        }
    runs["loop: fused"]["updates_per_call"] = loops["fused_updates_per_call"]
    print(f"{env_id}: SB3 A2C", flush=True)
    runs["SB3 A2C"] = sb3_training(
        config, frames_per_step, args.seconds, args.warmup_updates, args.min_updates
    )
    sb3_fps = runs["SB3 A2C"]["frames_per_second"]
    for run in runs.values():
        run["over_envpool"] = run["frames_per_second"] / raw_fps
        run["over_sb3"] = run["frames_per_second"] / sb3_fps
    learner = {"fnrl": fnrl_update, "torch": torch_update}
    for side in learner.values():
        side["frames_per_second"] = frames_per_update / (side["ms_per_update"] / 1e3)
    return {
        "env_id": env_id,
        "nb_env": config.nb_env,
        "exp_length": config.exp_length,
        "frames_per_step": frames_per_step,
        "network": network_name(config, spec),
        "runs": runs,
        "learner": learner,
        "torch_over_fnrl_learner_ms": torch_update["ms_per_update"] / fnrl_update["ms_per_update"],
    }


# --------------------------------------------------------------------------- report


def machine() -> dict:
    """Where and with what the numbers were measured."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "host": platform.node(),
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "stable_baselines3": stable_baselines3.__version__,
        "envpool": envpool.__version__,
    }


def print_table(row: dict) -> None:
    """The rows of one env: frames/s and the ratios; then the learner alone."""
    fnrl_params = row["learner"]["fnrl"]["params"]
    sb3_params = row["learner"]["torch"]["params"]
    print(
        f"\n{row['env_id']}: {row['nb_env']} envs x {row['exp_length']} steps, {row['network']} "
        f"({fnrl_params:,} params in fnrl, {sb3_params:,} in SB3"
        f"{'' if fnrl_params == sb3_params else ': MISMATCH'})"
    )
    header = f"{'run':19s} {'frames/s':>10s} {'/ envpool':>10s} {'/ SB3':>7s}  notes"
    print(header)
    print("-" * len(header))
    for name, run in row["runs"].items():
        notes = run.get("error") or (f"bound by {run['bound']}" if "bound" in run else "")
        if "ms_per_update" in run:
            notes = f"{run['ms_per_update']:.2f} ms per update (median)"
        if "updates_per_call" in run:
            notes += f", {run['updates_per_call']:.0f} per call"
        print(
            f"{name:19s} {run['frames_per_second']:10.0f} {run['over_envpool']:10.3f} "
            f"{run['over_sb3']:7.2f}  {notes}"
        )
    raw_fps = row["runs"]["envpool (raw)"]["frames_per_second"]
    for side, name in (("fnrl", "learner fnrl"), ("torch", "learner torch")):
        learner = row["learner"][side]
        notes = f"{learner['ms_per_update']:.2f} ms per update (median)"
        if side == "torch":
            notes += f", {row['torch_over_fnrl_learner_ms']:.2f}x fnrl's"
        print(
            f"{name:19s} {learner['frames_per_second']:10.0f} "
            f"{learner['frames_per_second'] / raw_fps:10.3f} {'':7s}  {notes}"
        )


def plot(rows: list[dict], info: dict, path: str) -> None:
    """Bar charts: training frames/s per run (top) and learner ms per update (bottom)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    colors = {
        "envpool (raw)": "0.55",
        "env adapter": "0.75",
        "fnrl host": "tab:blue",
        "fnrl compiled": "tab:cyan",
        "loop: host": "lightsteelblue",
        "loop: rollout apart": "paleturquoise",
        "loop: fused": "tab:cyan",
        "SB3 A2C": "tab:orange",
    }
    fig, axes = plt.subplots(
        2,
        len(rows),
        figsize=(6.5 * len(rows), 7),
        squeeze=False,
        gridspec_kw={"height_ratios": [5, 2]},
    )
    for column, row in enumerate(rows):
        top, bottom = axes[0, column], axes[1, column]
        names = list(row["runs"])[::-1]
        fps = [row["runs"][n]["frames_per_second"] for n in names]
        measured = [v for v in fps if not math.isnan(v) and v > 0]
        left = min(measured) / 3
        top.set_xscale("log")  # the rows span orders of magnitude; the labels give the values
        top.set_xlim(left, max(measured) * 12)
        bars = top.barh(
            names, [left if math.isnan(v) else v for v in fps], color=[colors[n] for n in names]
        )
        for bar, value, name in zip(bars, fps, names, strict=True):
            label = "n/a" if math.isnan(value) else f" {value:,.0f}"
            if name.startswith("fnrl") and not math.isnan(value):
                label += f"  ({row['runs'][name]['over_sb3']:.1f}x SB3)"
            top.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center")
        unit = "frames" if row["frames_per_step"] > 1 else "steps"
        top.set_xlabel(f"{unit} per second, log scale (higher is better)")
        top.set_title(
            f"{row['env_id']}: {row['nb_env']} envs x {row['exp_length']} steps, {row['network']}"
        )
        learner = row["learner"]
        sides = [
            ("PyTorch (SB3 update)", learner["torch"], "tab:orange"),
            ("fnrl (jit)", learner["fnrl"], "tab:blue"),
        ]
        bars = bottom.barh(
            [s[0] for s in sides],
            [s[1]["ms_per_update"] for s in sides],
            color=[s[2] for s in sides],
        )
        for bar, (_, side, _) in zip(bars, sides, strict=True):
            bottom.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {side['ms_per_update']:.2f} ms",
                va="center",
            )
        bottom.set_xlim(0, 1.3 * max(s[1]["ms_per_update"] for s in sides))
        bottom.set_xlabel("learner update alone, median ms on one batch (lower is better)")
    fig.suptitle(
        f"fnrl vs Stable-Baselines3 {info['stable_baselines3']} A2C, {info['date']}\n"
        f"{info['cpu']} ({info['cores']} cores)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-ids", nargs="+", default=["CartPole-v1", "PongNoFrameskip-v4"])
    parser.add_argument("--nb-env", type=int, default=16, help="envs, both libraries")
    parser.add_argument("--exp-length", type=int, default=5, help="rollout length T, both")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="about how long each row measures"
    )
    parser.add_argument("--min-updates", type=int, default=20, help="training updates at least")
    parser.add_argument(
        "--warmup-updates",
        type=int,
        default=10,
        help="updates of the untimed warm-up training run that sizes each timed one",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="PyTorch threads"
    )
    parser.add_argument("--out", default="peers.json", help="where to write the JSON")
    parser.add_argument("--plot", default="", help="where to draw the bar chart (PNG)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    info = machine()
    rows = [measure_env(env_id, args) for env_id in args.env_ids]
    for row in rows:
        print_table(row)
    with open(args.out, "w") as f:
        json.dump({"machine": info, "settings": vars(args), "rows": rows}, f, indent=2)
    print(f"\nwrote {args.out}")
    if args.plot:
        plot(rows, info, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
