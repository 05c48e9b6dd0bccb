"""Train your own agent with your own network body through fnrl's command line.

    python examples/custom_agent.py --max-train-steps 200000
    python examples/custom_agent.py -h     # the run's flags and this agent's --baseline-coef

The agent is the policy gradient with a learned baseline and n-step returns (Williams 1992;
Mnih et al. 2016 without GAE); the body is CleanRL's classic-control network, two tanh layers of
64 units. Both are registered under a name, and then every mode, ``-h``, ``config.json``,
checkpoints and ``--resume`` (from this script) know them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from fnrl import losses
from fnrl.agents import Agent, AgentPlugin, LossOutput, make_act, make_init, register_agent, unroll
from fnrl.agents.registry import PolicyGradientSettings
from fnrl.networks import register_network_body
from fnrl.settings import setting
from fnrl.train import main


class TanhMLP(nn.Module):
    """Two tanh layers of ``hidden_size`` units; feed-forward."""

    hidden_size: int = 64
    recurrent: ClassVar[bool] = False

    @nn.compact
    def __call__(self, carry, x, *, train):
        """Maps ``x`` ``[B, F]`` to ``[B, hidden_size]``; ``carry`` is ``()``."""
        del train
        for _ in range(2):
            x = jnp.tanh(nn.Dense(self.hidden_size)(x))
        return carry, x

    @classmethod
    def initial_carry(cls, batch_size, hidden_size):
        """``()``: no state."""
        del batch_size, hidden_size
        return ()


@dataclass(frozen=True)
class BaselineSettings(PolicyGradientSettings):
    """The shared settings (``--discount``, ``--entropy-coef``, ...) and the baseline's weight."""

    baseline_coef: float = setting(0.5, "weight of the baseline's squared error", "--baseline-coef")


def make_baseline_agent(network, spec, config: BaselineSettings) -> Agent:
    """Policy gradient with n-step returns ``G_t`` and advantages ``G_t - V(s_t)``."""

    def loss(params, trajectory):
        outputs, state = unroll(
            network, params, trajectory.initial_carry, trajectory.obs, trajectory.first
        )
        valid = ~trajectory.first[1:]
        discount = config.discount * (1.0 - trajectory.terminated.astype(jnp.float32))
        bootstrap = 1.0 - trajectory.truncated.astype(jnp.float32)
        returns = losses.lambda_returns(
            trajectory.rewards, discount, outputs.value[1:], lambda_=bootstrap
        )
        advantages = returns - outputs.value[:-1]
        if config.normalize_advantage:
            advantages = losses.normalize_advantages(advantages, valid)
        policy_loss = sum(
            losses.policy_gradient_loss(outputs.logits[k][:-1], a, advantages, valid)
            for k, a in trajectory.actions.items()
        )
        entropy_loss = sum(
            losses.entropy_loss(outputs.logits[k][:-1], valid) for k in trajectory.actions
        )
        value_loss = losses.value_loss(outputs.value[:-1], returns, valid)
        total = policy_loss + config.baseline_coef * value_loss + config.entropy_coef * entropy_loss
        metrics = {"total_loss": total, "policy_loss": policy_loss, "value_loss": value_loss}
        return total, LossOutput(metrics, state, count=valid.sum())

    return Agent(make_init(network, spec), network.initial_carry, make_act(network), loss)


register_network_body("TanhMLP", TanhMLP)
register_agent(
    "Baseline",
    AgentPlugin(
        make_baseline_agent,
        BaselineSettings,
        defaults={
            "network_body": "TanhMLP",
            "hidden_size": 64,
            "normalize": False,
            "learning_rate": 1e-3,
        },
        presets={"vector": {"network_body": "TanhMLP", "hidden_size": 64, "normalize": False}},
        help="policy gradient with a learned baseline and n-step returns",
    ),
)

if __name__ == "__main__":
    sys.exit(main(["--agent", "Baseline", *sys.argv[1:]]))
