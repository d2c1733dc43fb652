"""`ensnas evaluate PROGRAM.py --task T`: build, check and proxy-train two instances; print T1's statistics."""
from __future__ import annotations

import json

from agent.commands.common import add_task_options, evaluator_from_args, read_program, table, task_from_args
from evaluator.failures import EvaluationFailed


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate one program (two instances) and print its statistics")
    p.add_argument("program", help="a Python file defining build_model(input_shape, num_classes)")
    add_task_options(p)
    p.add_argument("--instances", type=int, default=2, help="independent training runs (K >= 2)")
    p.add_argument("--members", type=int, help="M for the predicted ensemble error (default: the task's)")
    p.set_defaults(handler=run)


def run(args) -> int:
    source = read_program(args.program)   # a missing file fails before any data is loaded
    task = task_from_args(args)
    evaluator = evaluator_from_args(args, task)
    result = evaluator.evaluate(source, instances=max(2, args.instances))
    if not result.ok:
        raise EvaluationFailed(result.reason, result.detail)
    members = args.members or task.members
    s = result.statistics
    if args.json:
        print(json.dumps({**result.summary(), "predicted_ensemble_error": s.predicted_ensemble_error(members)}, indent=2))
        return 0
    rows = [(f"instance {i} (seed {seed})", f"Brier {m.brier:.4f}  CE {m.cross_entropy:.4f}  acc {m.accuracy:.4f}")
            for i, (m, seed) in enumerate(zip(s.instances, result.seeds))]
    rows += [
        ("parameters", f"{result.param_count:,}"),
        ("E_a (mean Brier)", f"{s.member_error:.5f}"),
        ("σ² (prediction variance)", f"{s.variance:.5f}"),
        ("ρ (instance correlation)", f"{s.correlation:.4f}"),
        ("D̂ = ½·mean‖f1−f2‖²", f"{s.diversity:.5f}"),
        ("ambiguity Ā", f"{s.ambiguity:.5f}"),
        (f"E_ens measured (K={s.k})", f"{s.ensemble_error:.5f}  (Krogh–Vedelsby residual {s.kv_residual:.1e})"),
        (f"E_ens predicted (M={members})", f"{s.predicted_ensemble_error(members):.5f}"),
        ("seed noise σ²_noise", f"{s.noise_variance:.2e}"),
        ("accuracy / CE (mean)", f"{s.accuracy:.4f} / {s.cross_entropy:.4f}"),
        ("train seconds", ", ".join(f"{t:.1f}" for t in result.train_seconds) + f"  (wall {result.wall_seconds:.1f} s)"),
    ]
    print(f"{args.program} on {task.name} (validation split, {len(evaluator.data.y_val)} examples)")
    print(table(rows))
    return 0
