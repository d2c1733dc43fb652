"""EdgeNES (seed 001): a piecewise-linear hypernetwork alpha(lambda) trained with the
shared-edges regulariser, then sampled on a lambda grid to give diverse architectures.

- alpha(lambda) = (1 - s) a_k + s a_{k+1} on [r_k, r_{k+1}], s = (lambda - r_k)/(r_{k+1} - r_k),
  K pivots, r_0 = 0 and r_{K-1} = Lambda fixed, the inner pivots trained (as softmax-normalised
  gaps, so they stay ordered inside (0, Lambda)) and the K vectors a_k trained. Outside [0, Lambda]
  the end segments extrapolate. (The seed's eq. 2.2 swaps the two weights; we use the form
  that makes alpha(r_k) = a_k, which its text and §3.1 describe.)
- Objective (eq. 2.3): L_val(w, alpha(lambda)) + c (lambda - <alpha*, GS_t(alpha(lambda))>)^2 with
  lambda ~ U[-eps, Lambda + eps]; <alpha*, .> sums the Gumbel-softmax mass on alpha*'s kept
  (edge, operation) pairs, a smooth count of shared edges.
- Warm-up (§4): c rises and t falls linearly over the epochs.
- Sampling "hard" (default): each step trains one architecture drawn from GS (DARTS' rule on the
  Gumbel-perturbed weights, straight-through gradient to alpha), so only its edges' weights get
  gradient -- the quantity Theorem 1 counts, recorded per step in `step_edges`. "soft" runs the
  whole Gumbel-softmax mixture as DARTS does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from agent.proposers.darts.config import EdgeNESConfig, SearchData
from agent.proposers.darts.darts import Clock, SearchCost, check_loss
from agent.proposers.darts.data import SearchArrays, batches
from agent.proposers.darts.genotype import Genotype, GenotypeError, shared_edges
from agent.proposers.darts.network import STEPS
from agent.proposers.darts.ops import PRIMITIVES
from agent.proposers.darts.search_space import CELL_TYPES, EDGES, NONE_INDEX, SuperNet


class Hypernetwork(nn.Module):
    """alpha: [0, Lambda] -> R^{2 x 14 x 8}, piecewise linear over K pivots."""

    def __init__(self, *, init: dict[str, np.ndarray], edges_kept: int, pivots: int = 5,
                 noise: float = 0.0, seed: int = 0, alpha_star: Genotype | None = None) -> None:
        super().__init__()
        self.alpha_star = alpha_star
        if pivots < 2:
            raise GenotypeError(f"a piecewise-linear hypernetwork needs at least 2 pivots, got {pivots}")
        if edges_kept < 1:
            raise GenotypeError(f"Lambda must be positive, got {edges_kept}")
        self.edges_kept = float(edges_kept)
        gen = torch.Generator().manual_seed(seed)
        base = torch.stack([torch.as_tensor(np.asarray(init[k], np.float32)) for k in CELL_TYPES])
        self.vectors = nn.Parameter(base.unsqueeze(0).repeat(pivots, 1, 1, 1)
                                    + noise * torch.randn(pivots, *base.shape, generator=gen))
        self.gap_logits = nn.Parameter(torch.zeros(pivots - 1))

    @property
    def num_pivots(self) -> int:
        return self.vectors.shape[0]

    def pivots(self) -> torch.Tensor:
        """r_0 = 0 < r_1 < ... < r_{K-1} = Lambda; the inner ones depend on gap_logits."""
        inner = self.edges_kept * torch.cumsum(F.softmax(self.gap_logits, 0), 0)[:-1]
        zero = self.gap_logits.new_zeros(1)
        return torch.cat([zero, inner, zero + self.edges_kept])

    def forward(self, lam: float) -> dict[str, torch.Tensor]:
        r = self.pivots()
        k = int(torch.searchsorted(r.detach(), torch.tensor([float(lam)])).item()) - 1
        k = min(max(k, 0), self.num_pivots - 2)
        s = (lam - r[k]) / (r[k + 1] - r[k])
        alpha = (1 - s) * self.vectors[k] + s * self.vectors[k + 1]
        return {kind: alpha[i] for i, kind in enumerate(CELL_TYPES)}

    def alpha_numpy(self, lam: float) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {k: v.cpu().numpy() for k, v in self(lam).items()}


def gumbel_softmax(alpha: torch.Tensor, t: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """softmax((alpha + g) / t) over operations, g ~ Gumbel(0, 1) i.i.d."""
    u = torch.rand(alpha.shape, generator=generator).clamp_(1e-10, 1 - 1e-10).to(alpha.device)
    return F.softmax((alpha - torch.log(-torch.log(u))) / t, dim=-1)


def shared_mass(alpha_star: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> torch.Tensor:
    """<alpha*, GS(alpha)>: the (soft) number of alpha*'s kept (edge, op) pairs the sample uses."""
    return sum((alpha_star[k] * y[k]).sum() for k in CELL_TYPES)


def regulariser(lam: float, alpha_star: dict[str, torch.Tensor], y: dict[str, torch.Tensor], c: float) -> torch.Tensor:
    """c * (lambda - <alpha*, GS(alpha)>)^2 (seed 001 eq. 2.1)."""
    return c * (lam - shared_mass(alpha_star, y)) ** 2


def hard_sample(y: dict[str, torch.Tensor]) -> dict[str, list[tuple[int, int]]]:
    """DARTS' derivation applied to one Gumbel-softmax sample: per node the 2 strongest inputs."""
    out = {}
    for kind in CELL_TYPES:
        yk = y[kind].detach().clone()
        yk[:, NONE_INDEX] = -1.0
        best_val, best_op = yk.max(dim=-1)
        chosen = []
        for node in range(STEPS):
            edges = [e for e, (n, _) in enumerate(EDGES) if n == node]
            edges.sort(key=lambda e: -float(best_val[e]))
            chosen += [(e, int(best_op[e])) for e in sorted(edges[:2], key=lambda e: EDGES[e][1])]
        out[kind] = chosen
    return out


def straight_through(y: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights equal to 1 in the forward pass whose gradient is that of the soft sample."""
    return {k: 1.0 + v - v.detach() for k, v in y.items()}


def selected_edges(selected: dict[str, list[tuple[int, int]]]) -> frozenset[tuple[str, int, int, str]]:
    """(cell type, node, input, op) tuples of a single-path selection, as Genotype.edges names them."""
    return frozenset((kind, EDGES[e][0], EDGES[e][1], PRIMITIVES[op]) for kind in CELL_TYPES for e, op in selected[kind])


def schedule(start: float, end: float, epoch: int, epochs: int) -> float:
    """Linear warm-up value at `epoch` (0-based): start at the first epoch, end at the last."""
    return end if epochs <= 1 else start + (end - start) * epoch / (epochs - 1)


@dataclass
class EdgeNESResult:
    hypernet: Hypernetwork
    alpha_star: Genotype
    cost: SearchCost
    step_edges: list[frozenset] = field(default_factory=list)   # per w step: edges that got gradient
    step_lambdas: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


def train_hypernetwork(data: SearchArrays, *, supernet: SuperNet, alpha_star: Genotype, init_alpha: dict[str, np.ndarray],
                       cfg: EdgeNESConfig, batching: SearchData, seed: int, device: str = "cpu") -> EdgeNESResult:
    """Train alpha(lambda) (and the shared supernet weights) by eq. 2.3 with the warm-up schedule."""
    clock = Clock()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    lam_max = alpha_star.size
    hyper = Hypernetwork(init=init_alpha, edges_kept=lam_max, pivots=cfg.pivots, noise=cfg.init_noise, seed=seed,
                         alpha_star=alpha_star).to(device)
    star = {k: torch.as_tensor(v, device=device) for k, v in alpha_star.one_hot().items()}
    a_opt = torch.optim.Adam(hyper.parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999))
    w_opt = torch.optim.Adam(supernet.parameters(), lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
    xt, yt = torch.as_tensor(data.x_train, device=device), torch.as_tensor(data.y_train, device=device)
    xv, yv = torch.as_tensor(data.x_val, device=device), torch.as_tensor(data.y_val, device=device)
    result = EdgeNESResult(hypernet=hyper, alpha_star=alpha_star, cost=SearchCost())
    steps = 0
    for epoch in range(cfg.epochs):
        c = schedule(cfg.c_start, cfg.c_end, epoch, cfg.epochs)
        t = schedule(cfg.t_start, cfg.t_end, epoch, cfg.epochs)
        val_batches = list(batches(len(yv), batching.batch_size, rng))
        stats = []
        for i, tb in enumerate(batches(len(yt), batching.batch_size, rng)):
            if cfg.max_steps_per_epoch and i >= cfg.max_steps_per_epoch:
                break
            vb = val_batches[i % len(val_batches)]
            lam = float(rng.uniform(-cfg.epsilon, lam_max + cfg.epsilon))
            # architecture step: L_val + regulariser, w fixed
            y = {k: gumbel_softmax(a, t, gen) for k, a in hyper(lam).items()}
            logits = _forward(supernet, xv[vb], y, cfg.sampling)
            ce = F.cross_entropy(logits, yv[vb])
            reg = regulariser(lam, star, y, c)
            loss = ce + reg
            check_loss(loss, f"EdgeNES alpha step {steps}")
            a_opt.zero_grad(set_to_none=True)
            loss.backward()
            a_opt.step()
            # weight step on search-train with the same lambda, alpha fixed
            with torch.no_grad():
                y = {k: gumbel_softmax(a, t, gen) for k, a in hyper(lam).items()}
            selected = hard_sample(y) if cfg.sampling == "hard" else None
            logits = supernet(xt[tb], straight_through(y) if selected else y, selected)
            loss_w = F.cross_entropy(logits, yt[tb])
            check_loss(loss_w, f"EdgeNES w step {steps}")
            w_opt.zero_grad(set_to_none=True)
            loss_w.backward()
            w_opt.step()
            if selected is not None:
                result.step_edges.append(selected_edges(selected))
            result.step_lambdas.append(lam)
            stats.append((ce.item(), reg.item(), float(shared_mass(star, y)), lam))
            steps += 1
        s = np.array(stats)
        result.history.append({"epoch": epoch, "c": c, "t": t, "val_ce": float(s[:, 0].mean()),
                               "reg": float(s[:, 1].mean()),
                               "lambda_gap": float(np.abs(s[:, 2] - s[:, 3]).mean())})
    result.cost = clock.cost(steps)
    return result


def _forward(supernet: SuperNet, x: torch.Tensor, y: dict[str, torch.Tensor], sampling: str) -> torch.Tensor:
    if sampling == "hard":
        return supernet(x, straight_through(y), hard_sample(y))
    return supernet(x, y)


def sample_architectures(hyper: Hypernetwork, lambdas: list[float], *, t: float, seed: int = 0,
                         draws: int = 16) -> list[tuple[float, Genotype]]:
    """Algorithm 1's candidates: for each lambda, Gumbel-softmax samples of alpha(lambda) at
    temperature t turned into genotypes by the same rule training used; of `draws` samples the
    one whose shared-edge count with alpha* is nearest lambda is kept (first on ties)."""
    gen = torch.Generator().manual_seed(seed)
    star = None
    out = []
    for lam in lambdas:
        with torch.no_grad():
            alpha = hyper(lam)
            best = None
            for _ in range(max(1, draws)):
                y = {k: gumbel_softmax(a, t, gen) for k, a in alpha.items()}
                g = genotype_of(hard_sample(y))
                if star is None:
                    star = hyper.alpha_star
                gap = abs(shared_edges(g, star) - lam) if star is not None else 0.0
                if best is None or gap < best[0]:
                    best = (gap, g)
        out.append((float(lam), best[1]))
    return out


def genotype_of(selected: dict[str, list[tuple[int, int]]]) -> Genotype:
    """The Genotype of a single-path selection (2 inputs per node, ordered by input)."""
    return Genotype(**{kind: tuple((PRIMITIVES[op], EDGES[e][1]) for e, op in selected[kind]) for kind in CELL_TYPES})


def lambda_grid(edges_kept: int, pool: int) -> list[float]:
    """`pool` evenly spaced lambdas from 0 to Lambda (Lambda gives back alpha* itself)."""
    return [float(v) for v in np.linspace(0, edges_kept, pool)] if pool > 1 else [float(edges_kept)]


def updated_edges(step_edges: list[frozenset], members: list[Genotype], star: Genotype) -> dict:
    """Theorem 1's m, measured: per weight step, the sum over the final ensemble's members of the
    alpha* edges that both the step's architecture and the member use (the seed's count), and
    the same without the alpha* restriction (what the seed calls uncounted, hence its 'lower
    bound'). Returns means over steps and the realised mu (per step) and nu (per member)."""
    star_edges = star.edges()
    member_star = [m.edges() & star_edges for m in members]
    m_star, m_all, mu = [], [], []
    for step in step_edges:
        s = step & star_edges
        mu.append(len(s))
        m_star.append(sum(len(s & ms) for ms in member_star))
        m_all.append(sum(len(step & m.edges()) for m in members))
    return {"steps": len(step_edges), "N": len(members), "Lambda": star.size,
            "m_alpha_star": float(np.mean(m_star)) if m_star else float("nan"),
            "m_all_shared": float(np.mean(m_all)) if m_all else float("nan"),
            "mean_mu": float(np.mean(mu)) if mu else float("nan"),
            "nu": [len(ms) for ms in member_star]}
