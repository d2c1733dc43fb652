"""The sequential acceptance test (docs/theory.md T2b; docs/sequential_acceptance.md).

Does the candidate's M-member ensemble beat the incumbent's? Start from 2 instances of the
candidate, paired by seed with the incumbent's; look at the gain; reject if it can hardly become
confidently positive; from 4 instances on, accept if it is; otherwise ask for one more instance of
the candidate (and of the incumbent where it lacks that seed) and look again, up to `max_instances`. The accept
bounds come from a one-sided error-spending design, so the chance of accepting a candidate that
is not better stays ≤ α however the looks end (optional stopping); the futility stop is
non-binding and can only lower it. Each look's noise is the pair's own (paired by seed, Student-t
with its degrees of freedom); a prior from the seed program stands in only at the 2-instance look.

The procedure is a pure function of the instances: looks are replayed from the first each time,
look k using the first k seeds of the schedule, so a resumed run decides exactly as before.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import special, stats

from evaluator.paired import (Instances, KernelParts, NoisePrior, PairedGain, gain_from_parts, paired_gain,
                              pooled_variance, u_variance_scale)
from theory.acceptance import conditional_power, sequential_bounds

Outcome = Literal["accept", "reject", "more"]


@lru_cache(maxsize=32)
def design(first: int, last: int, alpha: float, rho: float) -> tuple[float, ...]:
    """Nominal one-sided levels of the accept looks (instances first..last), from error-spending z
    bounds at information fractions K(K−1)/(K_max(K_max−1)): a U-statistic's information grows at
    most that fast (pure pair interaction), so the looks are at least as correlated as the design
    assumes, which can only lower the chance of crossing (Slepian)."""
    ks = np.arange(first, last + 1)
    fractions = ks * (ks - 1) / (last * (last - 1))
    return tuple(float(stats.norm.sf(c)) for c in sequential_bounds(fractions, alpha, rho))


@dataclass(frozen=True)
class Look:
    instances: int
    gain: float
    se: float | None
    df: float | None
    statistic: float | None      # gain / se
    critical: float | None       # Student-t quantile at this look's nominal level
    futility: float | None       # predictive power of accepting by the last look
    outcome: Outcome

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """accept / reject, or "more": train the seeds in need_candidate and need_incumbent, then call again."""
    outcome: Outcome
    need_candidate: tuple[int, ...] = ()
    need_incumbent: tuple[int, ...] = ()
    looks: list[Look] = field(default_factory=list)
    last: PairedGain | None = None
    lower_bound: float = float("nan")   # gain − critical·se at the last look (nominal level)
    upper_bound: float = float("nan")
    reason: str = ""

    @property
    def instances(self) -> int:
        return self.looks[-1].instances if self.looks else 0

    def as_decision(self, config) -> dict:
        """The decision record (the fixed test's Decision fields, plus every look)."""
        nan = float("nan")
        pg = self.last
        gain = pg.gain if pg else (self.looks[-1].gain if self.looks else nan)
        return {"accept": self.outcome == "accept", "point_accept": bool(gain > 0),
                "confident": bool(self.lower_bound > 0 or self.upper_bound < 0),
                "delta": pg.delta if pg else nan, "threshold": pg.threshold if pg else nan,
                "predicted_improvement": gain, "lower_bound": self.lower_bound, "upper_bound": self.upper_bound,
                "members": config.members, "alpha": config.alpha, "reason": self.reason,
                "looks": [look.as_dict() for look in self.looks]}


def schedule(config) -> tuple[int, ...]:
    """Seeds of instances 1..max_instances, in the order the looks use them."""
    return tuple(range(config.max_instances))


def _t_isf(level: float, df: float) -> float:
    """Student-t upper quantile (scipy.special directly: stats.t.isf costs ~1 ms of overhead a call)."""
    return float(special.stdtrit(df, 1.0 - level)) if np.isfinite(df) else float(special.ndtri(1.0 - level))


FIRST_ACCEPT = 4  # accept from 4 paired instances: the jackknife of a 3-instance look (2 df) is too fragile (module doc)


def sequential_test(incumbent: Instances, candidate: Instances, labels: np.ndarray, config,
                    prior: NoisePrior | None = None) -> Verdict:
    """One pass of the sequential test over the instances both sides have (see the module doc).

    `config` is an evaluator.acceptance.AcceptanceConfig (members, alpha, max_instances, spending,
    futility). Returns "more" with the seeds to train when a look is undecided and instances are
    missing; never trains anything itself."""
    seeds = schedule(config)
    last = config.max_instances
    levels = design(FIRST_ACCEPT, last, config.alpha, config.spending)
    looks: list[Look] = []
    parts: tuple[KernelParts, KernelParts] | None = None
    for k in range(2, last + 1):
        use = seeds[:k]
        need_c = tuple(s for s in use if s not in candidate.seeds)
        need_i = tuple(s for s in use if s not in incumbent.seeds)
        if need_c or need_i:
            return Verdict("more", need_c, need_i, looks, reason=f"undecided after {k - 1} instances")
        if parts is None:  # once, over every seed the looks may use
            have = [s for s in seeds if s in incumbent.seeds and s in candidate.seeds]
            parts = (KernelParts.of(incumbent.take(have), labels), KernelParts.of(candidate.take(have), labels))
        pg = gain_from_parts(*parts, config.members, seeds=use)
        noise = pooled_variance(pg, prior)
        if noise is None:  # no seed-noise estimate (no prior, 2 instances; or no spread at all)
            looks.append(Look(k, pg.gain, None, None, None, None, None, "reject" if k == last else "more"))
            if k == last:
                return Verdict("reject", (), (), looks, pg, reason=f"rejected after {k} paired instances: "
                               f"predicted gain {pg.gain:+.5f} without any measurable noise to test it against")
            continue
        var, df = noise
        se = float(np.sqrt(var))
        z = pg.gain / se
        crit = float(_t_isf(levels[k - FIRST_ACCEPT], df)) if k >= FIRST_ACCEPT else float("inf")
        shown = crit if k >= FIRST_ACCEPT else float(_t_isf(levels[0], df))  # the bounds reported
        bounds = (pg.gain - shown * se, pg.gain + shown * se)
        if z >= crit:
            looks.append(Look(k, pg.gain, se, df, z, crit, None, "accept"))
            return _done("accept", looks, pg, bounds, config)
        if k == last:
            looks.append(Look(k, pg.gain, se, df, z, crit, None, "reject"))
            return _done("reject", looks, pg, bounds, config)
        power = _futility(pg, var, df, levels[-1], last, prior.share if prior else 0.5)
        outcome: Outcome = "reject" if power < config.futility else "more"
        looks.append(Look(k, pg.gain, se, df, z, crit if np.isfinite(crit) else None, power, outcome))
        if outcome == "reject":
            return _done("reject", looks, pg, bounds, config)
    raise AssertionError("unreachable: the last look always decides")


def _futility(pg: PairedGain, var: float, df: float, final_level: float, last: int, share: float) -> float:
    """Predictive power of crossing the last look's bound, with the seed variance decaying as the
    prior's U-statistic does (the example part stays) and the last look's degrees of freedom."""
    var_seed = var - pg.var_examples
    final_var = var_seed * u_variance_scale(last, share) / u_variance_scale(pg.instances, share) + pg.var_examples
    final_df = df + (last - pg.instances)
    final_crit = float(_t_isf(final_level, final_df))
    return conditional_power(pg.gain / np.sqrt(var), 1.0 / var, 1.0 / final_var, final_crit)


def _done(outcome: Outcome, looks: list[Look], pg: PairedGain, bounds, config) -> Verdict:
    last = looks[-1]
    m = config.members
    if outcome == "accept":
        why = (f"accepted after {last.instances} paired instances: predicted {m}-ensemble gain "
               f"{pg.gain:+.5f} (t = {last.statistic:.2f} ≥ {last.critical:.2f}, {last.df:.0f} df)")
    elif last.futility is not None:
        why = (f"rejected after {last.instances} paired instances: predicted {m}-ensemble gain {pg.gain:+.5f}, "
               f"chance to prove a gain by {config.max_instances} instances {last.futility:.2f} < {config.futility}")
    else:
        why = (f"rejected after {last.instances} paired instances: predicted {m}-ensemble gain {pg.gain:+.5f} "
               f"(t = {last.statistic:.2f} < {last.critical:.2f}); not confidently better")
    return Verdict(outcome, (), (), looks, pg, bounds[0], bounds[1], why)


Dominance = Literal["better", "worse", "undecided"]


def dominance(a: Instances, b: Instances, labels: np.ndarray, *, members: int, alpha: float = 0.05,
              prior: NoisePrior | None = None) -> Dominance:
    """A one-look reading, no training: is a's predicted M-ensemble error confidently lower ("better")
    or higher ("worse") than b's at one-sided level α (Student-t, paired where seeds are shared)?
    Not a sequential gate: repeated readings of growing instance sets are not α-controlled."""
    pg = paired_gain(b, a, labels, members)
    noise = pooled_variance(pg, prior)
    if noise is None:
        return "undecided"
    var, df = noise
    crit = float(_t_isf(alpha, df))
    z = pg.gain / np.sqrt(var)
    return "better" if z >= crit else "worse" if z <= -crit else "undecided"
