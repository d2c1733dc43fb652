"""RACHEL's actor-critic controller (seed 002 §2.3, docs/theory.md T5), readable top to bottom.

Policy: an LSTM cell started from one fixed random input tensor. For each of up to
`max_new_layers` potential layers it emits three tokens, each fed back (embedded) as the next
input, so the hidden state carries every earlier decision:

    presence in {0, 1}  ->  type in {0, 1}  ->  width token in 0..(width_max - width_min)

Logits are divided by the sampling temperature (1.5, x0.95 per iteration) before the softmax,
for sampling and for the log-probabilities of the update alike. Type and width are ignored
when presence is 0, so they then contribute neither log-probability nor entropy.

Critic: an MLP (64 ReLU units) on the LSTM's (hidden, cell) state before each layer decision.

Episode: one candidate. Its time steps are the layer decisions t = 0..T-1; the only reward is
the candidate's r = -objective after the last step, so the return is G_t = gamma^(T-1-t) r
(theory.rl.discounted_returns) and the advantage A_t = G_t - V(s_t) (theory.rl.advantages).
Loss = -A_t log pi(tokens_t) + 0.5 (G_t - V(s_t))^2 - 0.01 H(pi(.|s_t)), Adam 1e-3, a few
gradient steps on each iteration's batch of candidates (`update_epochs`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, model_validator

from theory.rl import advantages as rl_advantages
from theory.rl import discounted_returns


class ControllerConfig(BaseModel):
    """Seed 002's controller hyperparameters; defaults are the paper's."""
    model_config = ConfigDict(extra="forbid")
    max_new_layers: int = Field(3, ge=1)
    width_min: int = Field(16, ge=1)
    width_max: int = Field(256, ge=1)
    hidden: int = Field(64, ge=1, description="LSTM hidden size")
    embed: int = Field(32, ge=1, description="token embedding size (the LSTM input)")
    critic_hidden: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    gamma: float = Field(0.9, ge=0, le=1)
    critic_coef: float = Field(0.5, ge=0)
    entropy_coef: float = Field(0.01, ge=0)
    temperature: float = Field(1.5, gt=0)
    temperature_decay: float = Field(0.95, gt=0, le=1)
    update_epochs: int = Field(4, ge=1, description="gradient steps per iteration on its batch")
    seed: int = 0

    @model_validator(mode="after")
    def _widths(self) -> "ControllerConfig":
        if self.width_max < self.width_min:
            raise ValueError(f"width_max {self.width_max} < width_min {self.width_min}")
        return self

    @property
    def n_widths(self) -> int:
        return self.width_max - self.width_min + 1


@dataclass(frozen=True)
class Rollout:
    """One sampled candidate: tokens[t] = (presence, type, width token) for layer step t."""
    tokens: np.ndarray          # (T, 3) int64
    temperature: float
    width_min: int

    def layers(self) -> list[tuple[int, int, int]]:
        """(presence, type, width) per step, width in units/filters (token + width_min)."""
        return [(int(p), int(k), int(w) + self.width_min) for p, k, w in self.tokens]


def episode_targets(reward: float, values: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns G_t and advantages A_t = G_t - V(s_t) of one episode whose only reward, r, comes
    after its last step: the reward sequence is (0, ..., 0, r)."""
    values = np.asarray(values, dtype=np.float64)
    rewards = np.zeros(len(values))
    rewards[-1] = reward
    returns = discounted_returns(rewards, gamma)
    return returns, rl_advantages(returns, values)


class ActorCritic(nn.Module):
    """LSTM policy with three token heads, and the critic MLP on the LSTM state."""

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.config = config
        gen = torch.Generator().manual_seed(config.seed)
        self.register_buffer("start", torch.randn(1, config.embed, generator=gen))  # the single random input
        self.embed_presence = nn.Embedding(2, config.embed)
        self.embed_type = nn.Embedding(2, config.embed)
        self.embed_width = nn.Embedding(config.n_widths, config.embed)
        self.lstm = nn.LSTMCell(config.embed, config.hidden)
        self.presence_head = nn.Linear(config.hidden, 2)
        self.type_head = nn.Linear(config.hidden, 2)
        self.width_head = nn.Linear(config.hidden, config.n_widths)
        self.critic = nn.Sequential(nn.Linear(2 * config.hidden, config.critic_hidden), nn.ReLU(),
                                    nn.Linear(config.critic_hidden, 1))

    def run(self, batch: int, temperature: float, tokens: torch.Tensor | None = None,
            generator: torch.Generator | None = None):
        """Sample (tokens None) or re-score given tokens (B, T, 3). Returns tokens, the summed
        log-probability and entropy per step (B, T) and the critic's values (B, T)."""
        cfg = self.config
        h = torch.zeros(batch, cfg.hidden)
        c = torch.zeros(batch, cfg.hidden)
        x = self.start.expand(batch, -1)
        out_tokens, logps, entropies, values = [], [], [], []
        for t in range(cfg.max_new_layers):
            values.append(self.critic(torch.cat([h, c], dim=1)).squeeze(1))
            step_tokens, step_logp, step_ent = [], torch.zeros(batch), torch.zeros(batch)
            present = None
            for i, (head, embed) in enumerate(((self.presence_head, self.embed_presence),
                                               (self.type_head, self.embed_type),
                                               (self.width_head, self.embed_width))):
                h, c = self.lstm(x, (h, c))
                dist = torch.distributions.Categorical(logits=head(h) / temperature)
                if tokens is None:
                    token = torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)
                else:
                    token = tokens[:, t, i]
                mask = torch.ones(batch) if i == 0 else present  # type/width count only when present
                step_logp = step_logp + mask * dist.log_prob(token)
                step_ent = step_ent + mask * dist.entropy()
                if i == 0:
                    present = token.float()
                step_tokens.append(token)
                x = embed(token)
            out_tokens.append(torch.stack(step_tokens, dim=1))
            logps.append(step_logp)
            entropies.append(step_ent)
        return (torch.stack(out_tokens, dim=1), torch.stack(logps, dim=1), torch.stack(entropies, dim=1),
                torch.stack(values, dim=1))


class ActorCriticController:
    """Samples candidates' layer tokens and learns from their rewards (one call per iteration)."""

    def __init__(self, *, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig()
        torch.manual_seed(self.config.seed)
        self.net = ActorCritic(self.config)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)
        self.generator = torch.Generator().manual_seed(self.config.seed + 1)
        self.temperature = self.config.temperature

    def sample(self, n: int) -> list[Rollout]:
        with torch.no_grad():
            tokens, _, _, _ = self.net.run(n, self.temperature, generator=self.generator)
        return [Rollout(tokens=tokens[i].numpy().astype(np.int64), temperature=self.temperature,
                        width_min=self.config.width_min) for i in range(n)]

    def update(self, rollouts: list[Rollout], rewards: list[float]) -> dict:
        """Actor-critic step(s) on one iteration's batch; returns the losses of the last step."""
        cfg = self.config
        tokens = torch.as_tensor(np.stack([r.tokens for r in rollouts]))
        temperature = rollouts[0].temperature
        stats: dict = {}
        for _ in range(cfg.update_epochs):
            _, logp, entropy, values = self.net.run(len(rollouts), temperature, tokens=tokens)
            targets = [episode_targets(r, v, cfg.gamma) for r, v in zip(rewards, values.detach().numpy())]
            returns = torch.as_tensor(np.stack([g for g, _ in targets]), dtype=torch.float32)
            adv = torch.as_tensor(np.stack([a for _, a in targets]), dtype=torch.float32)
            actor_loss = -(adv * logp).mean()
            critic_loss = ((returns - values) ** 2).mean()
            entropy_mean = entropy.mean()
            loss = actor_loss + cfg.critic_coef * critic_loss - cfg.entropy_coef * entropy_mean
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            stats = {"loss": loss.item(), "actor_loss": actor_loss.item(), "critic_loss": critic_loss.item(),
                     "entropy": entropy_mean.item(), "mean_advantage": adv.mean().item()}
        return stats

    def decay(self) -> None:
        self.temperature *= self.config.temperature_decay

    def log_probability(self, rollout: Rollout) -> float:
        """log pi(rollout's tokens) at the rollout's temperature under the current policy."""
        with torch.no_grad():
            _, logp, _, _ = self.net.run(1, rollout.temperature, tokens=torch.as_tensor(rollout.tokens[None]))
        return float(logp.sum())

    def state_dict(self) -> dict:
        return {"net": {k: v.tolist() for k, v in self.net.state_dict().items()},
                "temperature": self.temperature}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict({k: torch.as_tensor(v) for k, v in state["net"].items()})
        self.temperature = float(state["temperature"])
