"""docs/theory.md T4: EdgeNES Theorem 1 (seed 001 §2.2, eqs. 2.4-2.5).

What is counted (from the seed's proof): the optimal architecture alpha* keeps Lambda edges.
At an optimisation step the trained architecture shares mu ~ U{1..Lambda} edges with alpha*,
a uniformly random mu-subset. Each of the N final-ensemble members shares nu_n ~ U{1..Lambda}
edges with alpha*, a uniformly random nu_n-subset, independently. m is the number of
(member, edge) pairs such that the edge belongs to both the member's shared subset and the
step's shared subset, i.e. m = sum_n |S_step ∩ S_n| -- edges counted once per member that
uses them. E[|S_step ∩ S_n| | mu, nu] = mu nu / Lambda (hypergeometric mean).

Not counted (the seed calls the result a lower bound for these reasons): edges outside alpha*
that a step and a member may share, and any coupling of mu and nu.
"""

from __future__ import annotations

from theory import _checks as chk


def expected_updated_edges(n_members: int, edges_kept: int) -> float:
    """docs/theory.md T4 Theorem 1: E[m] = N (Lambda+1)^2 / (4 Lambda) per hypernetwork step.

    `n_members` is N, the size of the final ensemble (Algorithm 1 calls it n; its N is the
    candidate pool); `edges_kept` is Lambda.
    """
    n = chk.members(n_members, "n_members")
    lam = chk.integer(edges_kept, "edges_kept", 1)
    return n * (lam + 1) ** 2 / (4.0 * lam)


def speedup_over_darts_ensembling(n_members: int, edges_kept: int) -> float:
    """docs/theory.md T4 eq. 2.5: m_H / m_DE = N (Lambda+1)^2 / (4 Lambda^2).

    A ratio of per-step rates of updated final-ensemble edges, not wall-clock time: DARTS
    ensembling trains one run at a time, so each step updates exactly that run's Lambda final
    edges (m_DE = Lambda), while a hypernetwork step updates E[m] of them (Theorem 1). Per-step
    compute is assumed equal. Values below 1 (e.g. N = 1) mean the hypernetwork is slower.
    """
    lam = chk.integer(edges_kept, "edges_kept", 1)
    return expected_updated_edges(n_members, lam) / lam
