"""Does the acceptance gate take the real improvements a search finds, and only those?

One-edit neighbour pairs (benchmarks/_neighbour_instances.py): for each base MLP, its neighbours one
step away in width, depth, dropout or activation; both directions of each pair are decisions
(incumbent → candidate). Per task:

- truth: the expected M-member ensemble Brier on the *test* split, from 24 seeds per architecture
  (10000..10023) that no decision uses, so a decision's seed luck cannot leak into its truth (and
  the test examples are not the validation examples the gate sees). The truth gain is the paired
  U-statistic over those seeds; its standard error is reported, and pairs whose truth sign is not
  2 SE clear are counted.
- decisions: 12 replicates per ordered pair, replicate r on seeds 6r..6r+5 (disjoint across
  replicates; both sides share them, as in the loop); the seed-noise prior from 4 instances of the
  task's seed architecture on seeds 20000+4r.. (another architecture, as in a real run).
- methods: the point test (2 instances), the old bounded test (2 instances, α = 0.1, pooled noise
  from the seed's 4 instances: what the loop did before issue 18), the sequential test (from 2,
  up to 6 paired instances; α = 0.05) and, as equal-cost references for it, one look at 3 or 4
  paired instances (Student-t on the pair's own noise, α = 0.05).
- per gap class of the true relative gain (tie < 1 %, small 1–3 %, clear > 3 %): P(correct), the
  false-accept rate (accepts among truly-not-better decisions), power (accepts among truly-better),
  each with a 95 % interval (pair-cluster bootstrap, at least as wide as Wilson), and instances per
  decision (candidate; and incumbent instances added, from 2).
- held-out replay: the sequential test's design was chosen looking at BASES' pairs, so the same
  decisions are replayed on a base never looked at before (HELD_OUT) and its neighbours, 6 replicates.

    python benchmarks/acceptance_fidelity.py [--tasks digits fashion-6k] [--replicates 12] [--held-out-replicates 6]
    python benchmarks/acceptance_fidelity.py --sweep   # + sensitivity of the sequential test's knobs

Instances are trained once, in-process with the worker's training code on one torch thread, and
cached under $ENSNAS_CACHE/acceptance_fidelity, so re-analyses are cheap.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import print_table, write_result  # noqa: E402
from benchmarks._neighbour_instances import BASES, HELD_OUT, InstanceCache, architectures, pairs  # noqa: E402
from evaluator.acceptance import AcceptanceConfig, acceptance_test, noise_variance_from_instances  # noqa: E402
from evaluator.paired import Instances, noise_prior_from_instances, paired_gain, pooled_variance  # noqa: E402
from evaluator.sequential import _t_isf, sequential_test  # noqa: E402

TRUTH_SEEDS = list(range(10_000, 10_024))
PRIOR_BASE = 20_000
CLASSES = [("tie", 0.0, 0.01), ("small", 0.01, 0.03), ("clear", 0.03, np.inf)]
FIXED_K = (3, 4)   # equal-cost references: one look at K paired instances (the sequential test's mean cost is ~3)
METHODS = ("point", "old", "sequential") + tuple(f"fixed{k}" for k in FIXED_K)
COST = {"point": 2, "old": 2, **{f"fixed{k}": k for k in FIXED_K}}   # candidate instances per decision


def train_all(cache: InstanceCache, replicates: int, k_max: int, bases=BASES, truth_seeds=TRUTH_SEEDS) -> float:
    spent = 0.0
    for arch in architectures(bases):
        spent += cache.ensure(arch, truth_seeds, test=True)
        spent += cache.ensure(arch, list(range(replicates * k_max)))
    spent += cache.ensure(BASES[0], list(range(PRIOR_BASE, PRIOR_BASE + 4 * replicates)))
    return spent


def cache_is_current(cache: InstanceCache) -> float:
    """Retrain one cached instance with today's code: the largest probability difference (instances are
    cached across code changes, so a change to training or data would show here)."""
    data, arrays = cache.inputs
    from benchmarks._common import train_program
    val, _, _ = train_program(BASES[0].source, cache.task, data, arrays, seeds=[0])
    return float(np.abs(val[0] - cache.load(BASES[0], [0])[0]).max())


def truth(cache: InstanceCache, members: int, bases=BASES, truth_seeds=TRUTH_SEEDS) -> dict:
    """Per ordered pair: the true gain of the candidate's M-ensemble on the test split (and val)."""
    y_val, y_test = cache.labels
    seeds = tuple(truth_seeds)
    out = {}
    for base, cand, edit in pairs(bases):
        for inc, can in ((base, cand), (cand, base)):
            t = paired_gain(Instances(seeds, cache.load(inc, truth_seeds, "test")),
                            Instances(seeds, cache.load(can, truth_seeds, "test")), y_test, members)
            v = paired_gain(Instances(seeds, cache.load(inc, truth_seeds, "val")),
                            Instances(seeds, cache.load(can, truth_seeds, "val")), y_val, members)
            inc_error = _ensemble_error(cache.load(inc, truth_seeds, "test"), y_test, members)
            out[(inc.name, can.name)] = dict(
                incumbent=inc.name, candidate=can.name, edit=edit if inc is base else f"undo {edit}",
                gain=t.gain, gain_se=float(np.sqrt(t.var_seed + t.var_examples)), relative=t.gain / inc_error,
                incumbent_error=inc_error, gain_val=v.gain)
    return out


def _ensemble_error(probs: np.ndarray, labels: np.ndarray, members: int) -> float:
    """The expected M-ensemble Brier from K instances (T1's U-statistic)."""
    from evaluator.statistics import brier_per_example, one_hot, pair_diversity_per_example
    targets = one_hot(labels, probs.shape[-1])
    return float(brier_per_example(probs, targets).mean() - (members - 1) / members * pair_diversity_per_example(probs).mean())


def fixed_k_accept(pi: np.ndarray, pc: np.ndarray, k: int, labels: np.ndarray, config: AcceptanceConfig) -> bool:
    """One look at k paired instances: Student-t on the pair's own noise (jackknife over seeds +
    examples, Welch–Satterthwaite df), one-sided level α — the fixed design of the same cost."""
    seeds = tuple(range(k))
    pg = paired_gain(Instances(seeds, pi[:k]), Instances(seeds, pc[:k]), labels, config.members)
    noise = pooled_variance(pg, None)
    if noise is None:
        return False
    var, df = noise
    return bool(pg.gain / np.sqrt(var) >= _t_isf(config.alpha, df))


def decisions(cache: InstanceCache, replicates: int, config: AcceptanceConfig, old: AcceptanceConfig,
              methods=METHODS, bases=BASES) -> list[dict]:
    """Every method's decision per ordered pair and replicate."""
    y_val, _ = cache.labels
    k_max = config.max_instances
    rows = []
    vals = _decision_vals(cache, replicates * k_max, bases)
    for r in range(replicates):
        prior_probs = cache.load(BASES[0], list(range(PRIOR_BASE + 4 * r, PRIOR_BASE + 4 * r + 4)))
        prior = noise_prior_from_instances(prior_probs, y_val, config.members, max_df=config.prior_df) \
            if config.prior_df > 0 else None
        pooled = noise_variance_from_instances(prior_probs, y_val, old.members)
        block = slice(k_max * r, k_max * (r + 1))
        for base, cand, _ in pairs(bases):
            for inc, can in ((base, cand), (cand, base)):
                row = dict(incumbent=inc.name, candidate=can.name, replicate=r)
                pi, pc = vals[inc.name][block], vals[can.name][block]
                if "point" in methods or "old" in methods:
                    d = acceptance_test(pi[:2], pc[:2], y_val, old, noise_variance=pooled)
                    row.update(point=d.point_accept, old=d.accept)
                for k in FIXED_K:
                    if f"fixed{k}" in methods:
                        row[f"fixed{k}"] = fixed_k_accept(pi, pc, k, y_val, config)
                if "sequential" in methods:
                    seeds = tuple(range(k_max))
                    v = sequential_test(Instances(seeds, pi), Instances(seeds, pc), y_val, config, prior)
                    assert v.outcome != "more"
                    row.update(sequential=v.outcome == "accept", instances=v.instances)
                rows.append(row)
    return rows


def ideal_power(cache: InstanceCache, replicates: int, config: AcceptanceConfig, bases=BASES) -> dict:
    """Per ordered pair: the power of a one-sided z-test at α with K_max instances and the pair's
    *true* noise (the spread of the K_max-instance gain over the replicates, plus the example part of
    the gain over all decision seeds) — a ceiling for any test that trains at most K_max instances."""
    y_val, _ = cache.labels
    k = config.max_instances
    vals = _decision_vals(cache, replicates * k, bases)
    out = {}
    for base, cand, _ in pairs(bases):
        pb, pc = vals[base.name], vals[cand.name]
        seeds = tuple(range(k))
        gains = [paired_gain(Instances(seeds, pb[k * r:k * (r + 1)]), Instances(seeds, pc[k * r:k * (r + 1)]),
                             y_val, config.members).gain for r in range(replicates)]
        everything = tuple(range(len(pb)))
        pooled = paired_gain(Instances(everything, pb), Instances(everything, pc), y_val, config.members)
        sd = float(np.sqrt(np.var(gains, ddof=1) + pooled.var_examples))
        out[(base.name, cand.name)] = out[(cand.name, base.name)] = sd
    return out


_VALS: dict = {}


def _decision_vals(cache: InstanceCache, seeds: int, bases=BASES) -> dict[str, np.ndarray]:
    key = (cache.task_name, seeds, tuple(b.name for b in bases))
    if key not in _VALS:
        _VALS[key] = {a.name: cache.load(a, list(range(seeds))) for a in architectures(bases)}
    return _VALS[key]


def rate_ci(flags_by_pair: list[list[bool]], draws: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95 % interval for a rate over decisions that come in clusters (the replicates of one pair share
    its truth): the pair-cluster bootstrap's percentile interval, widened to cover the Wilson interval
    over decisions (which alone would treat them as independent, and the bootstrap alone collapses
    to a point when no pair ever errs)."""
    from scipy import stats
    groups = [np.asarray(f, dtype=float) for f in flags_by_pair if len(f)]
    if not groups:
        return None
    hits = np.array([g.sum() for g in groups])
    sizes = np.array([len(g) for g in groups])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(groups), size=(draws, len(groups)))
    boot = hits[pick].sum(1) / sizes[pick].sum(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    n, p = sizes.sum(), hits.sum() / sizes.sum()
    z = stats.norm.isf(0.025)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(min(lo, centre - half, p)), float(max(hi, centre + half, p))


def summarise(rows: list[dict], truths: dict, methods=METHODS, ideal: dict | None = None,
              alpha: float = 0.05, ci: bool = True) -> dict:
    """Per gap class and method: P(correct), false-accept rate, power (with 95 % CIs), instances per
    decision (and the ideal test's power, if `ideal` gives each pair's true sd of the K_max-instance gain)."""
    from scipy import stats

    def key(r):
        return (r["incumbent"], r["candidate"])

    def by_pair(rs, m):
        groups: dict = {}
        for r in rs:
            groups.setdefault(key(r), []).append(bool(r[m]))
        return list(groups.values())

    out = {}
    for name, lo, hi in CLASSES + [("all", 0.0, np.inf)]:
        mine = [r for r in rows if lo <= abs(truths[key(r)]["relative"]) < hi]
        better = [r for r in mine if truths[key(r)]["gain"] > 0]
        worse = [r for r in mine if truths[key(r)]["gain"] <= 0]
        pairs_ = {key(r) for r in mine}
        entry = {"pairs": len(pairs_), "decisions": len(mine), "better_pairs": len({key(r) for r in better}),
                 "truth_unsure_pairs": sum(abs(truths[p]["gain"]) < 2 * truths[p]["gain_se"] for p in pairs_)}
        for m in methods:
            if m not in (mine[0] if mine else {}):
                continue
            seq = m == "sequential"
            entry[m] = {
                "p_correct": _rate([r[m] == (truths[key(r)]["gain"] > 0) for r in mine]),
                "false_accept": _rate([r[m] for r in worse]), "n_worse": len(worse),
                "power": _rate([r[m] for r in better]), "n_better": len(better),
                "instances": _mean([r["instances"] for r in mine]) if seq else float(COST[m]),
                "incumbent_added": _mean([r["instances"] - 2 for r in mine]) if seq else float(COST[m] - 2),
            }
            if ci:
                entry[m]["false_accept_ci"] = rate_ci(by_pair(worse, m))
                entry[m]["power_ci"] = rate_ci(by_pair(better, m))
        if ideal is not None:
            z = stats.norm.isf(alpha)
            entry["ideal_power"] = _rate([stats.norm.sf(z - truths[key(r)]["gain"] / ideal[key(r)]) for r in better])
        out[name] = entry
    return out


def _rate(flags) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _with_ci(value, ci, n) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] ({n})" if ci else f"{value:.3f} ({n})"


def table(title: str, summary: dict, methods=METHODS) -> None:
    headers = ["class", "pairs", "better", "decisions", "method", "P(correct)", "false accept [95% CI] (n)",
               "power [95% CI] (n)", "cand. inst.", "+incumbent"]
    rows = []
    for name, e in summary.items():
        for m in methods:
            if m in e:
                s = e[m]
                rows.append([name, e["pairs"], e["better_pairs"], e["decisions"], m, _fmt(s["p_correct"]),
                             _with_ci(s["false_accept"], s.get("false_accept_ci"), s["n_worse"]),
                             _with_ci(s["power"], s.get("power_ci"), s["n_better"]),
                             _fmt(s["instances"]), _fmt(s["incumbent_added"])])
    print(f"\n{title}")
    print_table(headers, rows)
    ideal = {name: e.get("ideal_power") for name, e in summary.items()}
    print("ideal power (z-test, K_max instances, each pair's true noise, same α): "
          + ", ".join(f"{k} {_fmt(v)}" for k, v in ideal.items()))


def evaluate(cache: InstanceCache, replicates: int, config: AcceptanceConfig, old: AcceptanceConfig, *,
             bases, truth_seeds, title: str) -> dict:
    truths = truth(cache, config.members, bases, truth_seeds)
    rows = decisions(cache, replicates, config, old, bases=bases)
    ideal = ideal_power(cache, replicates, config, bases)
    summary = summarise(rows, truths, ideal=ideal, alpha=config.alpha)
    table(title, summary)
    return {"bases": [b.name for b in bases], "replicates": replicates, "truth_seeds": len(truth_seeds),
            "summary": summary, "pairs": list(truths.values()), "decisions": rows}


SWEEP = [dict(), dict(prior_df=0.0), dict(prior_df=1.0), dict(futility=0.05), dict(futility=0.2),
         dict(spending=1.0), dict(spending=3.0), dict(alpha=0.1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["digits", "fashion-6k"])
    parser.add_argument("--replicates", type=int, default=12)
    parser.add_argument("--held-out-replicates", type=int, default=6, help="0: skip the held-out replay")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also the sequential test's knobs, one at a time")
    parser.add_argument("--max-instances", type=int, default=None,
                        help="the sequential test's cap (default: the loop's); replicate r uses seeds cap·r..")
    parser.add_argument("--futility", type=float, default=None, help="the sequential test's futility (default: the loop's)")
    parser.add_argument("--name", default="acceptance_fidelity")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    config = AcceptanceConfig(members=args.members)          # the loop's defaults, M set to the truth's
    if args.max_instances is not None:
        config = config.model_copy(update={"max_instances": args.max_instances})
    if args.futility is not None:
        config = config.model_copy(update={"futility": args.futility})
    old = AcceptanceConfig(members=args.members, method="fixed", alpha=0.1, bootstrap=2000)
    result = {"members": args.members, "replicates": args.replicates, "truth_seeds": len(TRUTH_SEEDS),
              "held_out_replicates": args.held_out_replicates, "fixed_k": list(FIXED_K),
              "sequential_config": config.model_dump(), "old_config": old.model_dump(), "tasks": {},
              "loadavg": [os.getloadavg()]}
    for task in args.tasks:
        cache = InstanceCache(task)
        spent = train_all(cache, args.replicates, config.max_instances)
        if args.held_out_replicates:
            spent += train_all(cache, args.held_out_replicates, config.max_instances, bases=HELD_OUT)
        print(f"{task}: instances ready ({spent:.0f} s of training now)", flush=True)
        if args.train_only:
            continue
        drift = cache_is_current(cache)
        print(f"{task}: cached instance vs retrained now: max |Δp| = {drift:.2e}", flush=True)
        entry = evaluate(cache, args.replicates, config, old, bases=BASES, truth_seeds=TRUTH_SEEDS,
                         title=f"{task}: calibration pairs ({len(pairs())} edits, both directions), "
                               f"{args.replicates} replicates, truth = test split, 24 disjoint seeds")
        entry.update(cache_max_abs_diff=drift, train_seconds_per_instance=_seconds_per_instance(cache),
                     training_seconds_now=spent)
        if args.held_out_replicates:
            entry["held_out"] = evaluate(
                cache, args.held_out_replicates, config, old, bases=HELD_OUT, truth_seeds=TRUTH_SEEDS,
                title=f"{task}: HELD-OUT pairs ({len(pairs(HELD_OUT))} edits of {HELD_OUT[0].name}, both "
                      f"directions), {args.held_out_replicates} replicates")
        if args.sweep:
            truths = truth(cache, args.members)
            entry["sweep"] = []
            for change in SWEEP:
                variant = config.model_copy(update=change)
                s = summarise(decisions(cache, args.replicates, variant, old, methods=("sequential",)), truths,
                              methods=("sequential",), ci=False)
                entry["sweep"].append({"change": change, "summary": s})
            _sweep_table(task, entry["sweep"])
        result["tasks"][task] = entry
        result["loadavg"].append(os.getloadavg())
    result["wall_seconds"] = time.perf_counter() - start
    if not args.train_only:
        print(f"\nload average (1, 5, 15 min) at start and after each task: {result['loadavg']}")
        print(f"wrote {write_result(args.name, result)}")


def _seconds_per_instance(cache: InstanceCache) -> float:
    arch = BASES[0]
    return cache.train_seconds(arch, TRUTH_SEEDS) / len(TRUTH_SEEDS)


def _sweep_table(task: str, sweep: list[dict]) -> None:
    headers = ["change", "FA tie", "FA small", "FA clear", "power small", "power clear", "inst./decision"]
    rows = []
    for s in sweep:
        e = s["summary"]
        q = lambda c, k: _fmt(e[c]["sequential"][k]) if "sequential" in e[c] else "–"  # noqa: E731
        rows.append([str(s["change"] or "defaults"), q("tie", "false_accept"), q("small", "false_accept"),
                     q("clear", "false_accept"), q("small", "power"), q("clear", "power"), q("all", "instances")])
    print(f"\n{task}: the sequential test's knobs, one at a time")
    print_table(headers, rows)


if __name__ == "__main__":
    main()
