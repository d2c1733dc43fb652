"""`ensnas compare BASE.py CAND.py --task T --members M`: the ensemble acceptance test (T2)."""
from __future__ import annotations

import json

from agent.commands.common import add_task_options, evaluator_from_args, read_program, table, task_from_args
from evaluator.failures import EvaluationFailed


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="would CAND's M-ensemble beat BASE's? (the acceptance test)")
    p.add_argument("base")
    p.add_argument("candidate")
    add_task_options(p)
    p.add_argument("--members", type=int, help="deployed ensemble size M (default: the task's)")
    p.add_argument("--alpha", type=float, default=0.1, help="one-sided level of the bound (default 0.1)")
    p.add_argument("--point", action="store_true", help="decide on the point estimate alone (the paper's test)")
    p.add_argument("--full", action="store_true", help="train real M-member ensembles (ground truth, M/2 times the cost)")
    p.set_defaults(handler=run)


def run(args) -> int:
    sources = {"base": read_program(args.base), "candidate": read_program(args.candidate)}  # before any data
    task = task_from_args(args)
    members = args.members or task.members
    evaluator = evaluator_from_args(args, task)
    instances = members if args.full else 2
    results = {}
    for role, path in (("base", args.base), ("candidate", args.candidate)):
        r = evaluator.evaluate(sources[role], instances=instances)
        if not r.ok:
            raise EvaluationFailed(r.reason, f"{role} {path}: {r.detail}")
        results[role] = r
    from evaluator.acceptance import AcceptanceConfig, acceptance_test, full_ensemble_test
    config = AcceptanceConfig(members=members, alpha=args.alpha, require_confident=not args.point)
    test = full_ensemble_test if args.full else acceptance_test
    decision = test(results["base"].val_probs, results["candidate"].val_probs, evaluator.data.y_val, config)
    if args.json:
        print(json.dumps({"decision": decision.as_dict(), **{k: v.summary() for k, v in results.items()}}, indent=2))
        return 0
    b, c = results["base"].statistics, results["candidate"].statistics
    print(f"{args.candidate} vs {args.base} on {task.name}, M = {members}, {instances} instances each")
    print(table([
        ("decision", "ACCEPT" if decision.accept else "REJECT"),
        ("E_a base / candidate", f"{b.member_error:.5f} / {c.member_error:.5f}"),
        ("D̂ base / candidate", f"{b.diversity:.5f} / {c.diversity:.5f}"),
        ("ρ base / candidate", f"{b.correlation:.4f} / {c.correlation:.4f}"),
        ("Δ = E_a − E_a′", f"{decision.delta:+.5f}"),
        ("threshold ((M−1)/M)(D_a − D_a′)", f"{decision.threshold:+.5f}"),
        ("predicted ensemble gain", f"{decision.predicted_improvement:+.5f}"),
        (f"{1 - decision.alpha:.0%} bounds", f"[{decision.lower_bound:+.5f}, {decision.upper_bound:+.5f}]"),
        ("why", decision.reason),
    ]))
    return 0
