"""RACHEL controller (docs/theory.md T5): returns and advantages on hand-made rollouts, masking of
ignored tokens, temperature, the direction of the actor-critic update, and learning on a
synthetic reward."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.proposers.rachel.controller import ActorCriticController, ControllerConfig, Rollout, episode_targets
from agent.proposers.rachel.search import RandomController



pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = ControllerConfig(width_min=16, width_max=23, hidden=16, embed=8, critic_hidden=16, seed=0)


def test_returns_and_advantages_on_a_hand_made_episode():
    # r = -0.5 after the third (last) layer decision; gamma = 0.9
    returns, adv = episode_targets(-0.5, np.array([0.1, -0.2, 0.3]), 0.9)
    np.testing.assert_allclose(returns, [-0.405, -0.45, -0.5])          # 0.81 r, 0.9 r, r
    np.testing.assert_allclose(adv, [-0.505, -0.25, -0.8])              # G_t - V(s_t)


def test_returns_with_gamma_one_and_zero():
    np.testing.assert_allclose(episode_targets(2.0, np.zeros(3), 1.0)[0], [2.0, 2.0, 2.0])
    np.testing.assert_allclose(episode_targets(2.0, np.zeros(3), 0.0)[0], [0.0, 0.0, 2.0])


def _set_critic_constant(ctrl: ActorCriticController, value: float) -> None:
    with torch.no_grad():
        last = ctrl.net.critic[-1]
        last.weight.zero_()
        last.bias.fill_(value)


def _logp(ctrl, rollout):
    return ctrl.log_probability(rollout)


def test_update_moves_probability_towards_the_positive_advantage():
    """Two hand-made rollouts, critic fixed at V = 0 (its lr is shared but one step barely moves
    it): the one with reward +1 gains log-probability, the one with reward -1 loses it."""
    ctrl = ActorCriticController(config=SMALL.model_copy(update={"update_epochs": 1, "lr": 1e-2,
                                                                 "entropy_coef": 0.0}))
    _set_critic_constant(ctrl, 0.0)
    good = Rollout(tokens=np.array([[1, 1, 7], [1, 1, 7], [1, 1, 7]]), temperature=1.0, width_min=16)
    bad = Rollout(tokens=np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0]]), temperature=1.0, width_min=16)
    before = (_logp(ctrl, good), _logp(ctrl, bad))
    stats = ctrl.update([good, bad], [1.0, -1.0])
    after = (_logp(ctrl, good), _logp(ctrl, bad))
    assert after[0] > before[0] and after[1] < before[1]
    # advantages were G_t - 0: mean over steps and rollouts of (+G) and (-G) is 0
    assert stats["mean_advantage"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_critic_learns_the_return():
    ctrl = ActorCriticController(config=SMALL.model_copy(update={"update_epochs": 1, "lr": 1e-2}))
    rollout = ctrl.sample(4)
    losses = [ctrl.update(rollout, [-0.7] * 4)["critic_loss"] for _ in range(150)]
    assert losses[-1] < 0.05 * losses[0]
    with torch.no_grad():
        _, _, _, values = ctrl.net.run(4, ctrl.temperature, tokens=torch.as_tensor(np.stack([r.tokens for r in rollout])))
    np.testing.assert_allclose(values.numpy()[:, -1], -0.7, atol=0.05)   # V(s_T-1) -> r


def test_absent_layer_ignores_type_and_width():
    ctrl = ActorCriticController(config=SMALL)
    a = Rollout(tokens=np.array([[0, 0, 0], [1, 1, 3], [0, 1, 5]]), temperature=1.5, width_min=16)
    b = Rollout(tokens=np.array([[0, 1, 6], [1, 1, 3], [0, 0, 2]]), temperature=1.5, width_min=16)
    # log-probs differ only through the LSTM state fed by the ignored tokens; with presence 0 in the
    # last step, that step contributes presence only, so changing its type/width changes nothing
    c = Rollout(tokens=np.array([[0, 0, 0], [1, 1, 3], [0, 0, 2]]), temperature=1.5, width_min=16)
    assert _logp(ctrl, a) == pytest.approx(_logp(ctrl, c), abs=1e-6)
    assert _logp(ctrl, a) != pytest.approx(_logp(ctrl, b), abs=1e-6)   # first-step tokens feed later steps
    assert a.layers() == [(0, 0, 16), (1, 1, 19), (0, 1, 21)]


def test_temperature_flattens_and_decays():
    ctrl = ActorCriticController(config=SMALL)
    with torch.no_grad():
        ctrl.net.width_head.bias.copy_(torch.linspace(-3, 3, SMALL.n_widths))
        tokens = torch.as_tensor(np.stack([r.tokens for r in ctrl.sample(8)]))
        _, _, hot, _ = ctrl.net.run(8, 1.5, tokens=tokens)
        _, _, cold, _ = ctrl.net.run(8, 0.3, tokens=tokens)
    assert hot.sum() > cold.sum()
    ctrl.decay()
    ctrl.decay()
    assert ctrl.temperature == pytest.approx(1.5 * 0.95 ** 2)


def _synthetic_reward(rollout: Rollout) -> float:
    """Rewards present residual-type layers of large width: a learnable target with no training."""
    return float(sum(p * k * (w - 16) / 7 for p, k, w in rollout.layers()))


@pytest.mark.slow
def test_actor_critic_learns_a_synthetic_reward_better_than_random():
    cfg = SMALL.model_copy(update={"lr": 1e-2, "temperature": 1.0, "temperature_decay": 1.0})
    ctrl, rand = ActorCriticController(config=cfg), RandomController(config=cfg)
    for _ in range(60):
        batch = ctrl.sample(8)
        ctrl.update(batch, [_synthetic_reward(r) for r in batch])
    learned = np.mean([_synthetic_reward(r) for r in ctrl.sample(200)])
    random = np.mean([_synthetic_reward(r) for r in rand.sample(200)])
    assert random == pytest.approx(0.375, abs=0.1)   # E = 3 * P(p=1) P(k=1) E[(w-16)/7] = 3 * .5 * .5 * .5
    assert learned > random + 0.5


def test_random_controller_is_uniform_and_does_not_learn():
    rand = RandomController(config=SMALL)
    tokens = np.stack([r.tokens for r in rand.sample(3000)])
    assert tokens[..., 0].mean() == pytest.approx(0.5, abs=0.03)
    assert tokens[..., 1].mean() == pytest.approx(0.5, abs=0.03)
    assert tokens[..., 2].min() == 0 and tokens[..., 2].max() == SMALL.n_widths - 1
    assert rand.update([], []) == {}


def test_state_round_trip_reproduces_the_policy():
    a = ActorCriticController(config=SMALL)
    batch = a.sample(4)
    a.update(batch, [0.1, 0.2, -0.3, 0.0])
    a.decay()
    b = ActorCriticController(config=SMALL.model_copy(update={"seed": 9}))
    b.load_state_dict(a.state_dict())
    assert b.temperature == a.temperature
    assert _logp(a, batch[0]) == pytest.approx(_logp(b, batch[0]), abs=1e-6)


def test_config_rejects_inverted_width_range():
    with pytest.raises(ValueError):
        ControllerConfig(width_min=64, width_max=16)
