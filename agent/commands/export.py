"""`ensnas export RUN [--out DIR]`: the final incumbent as an M-member ensemble (program + weights)."""
from __future__ import annotations

import shutil
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="deploy (if not yet) and export the final ensemble, loadable with plain PyTorch")
    p.add_argument("run_dir")
    p.add_argument("--out", help="copy the export here")
    p.add_argument("--sandbox", help="backend for training the members, if not yet deployed")
    p.set_defaults(handler=run)


def run(args) -> int:
    from agent.deploy import deploy_final
    from agent.loop import SearchLoop
    from agent.store import RunStore
    store = RunStore(Path(args.run_dir))
    report = store.get_state("final_report")
    store.close()
    if report is None or not Path(report.get("export_dir", "")).exists():
        loop = SearchLoop(run_dir=Path(args.run_dir), resume=True, sandbox_name=args.sandbox)
        loop._ensure_seed()
        report = deploy_final(loop)
    export_dir = Path(report["export_dir"])
    if args.out:
        shutil.copytree(export_dir, args.out, dirs_exist_ok=True)
        export_dir = Path(args.out)
    print(f"exported #{report['final_id']} as a {report['members']}-member ensemble to {export_dir}")
    print(f"  from load import load_ensemble; ens = load_ensemble('{export_dir}')  # ens(x) → probabilities")
    return 0
