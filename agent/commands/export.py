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
    from agent.deploy import export_path
    from agent.store import RunStore
    run_dir = Path(args.run_dir)
    with RunStore(run_dir, read_only=True) as store:   # an existing export is only read
        report = store.get_state("final_report")
    if report is None or not (export_path(run_dir, report) / "manifest.json").exists():
        report = _deploy(run_dir, args.sandbox)
    export_dir = export_path(run_dir, report)
    if args.out:
        shutil.copytree(export_dir, args.out, dirs_exist_ok=True)
        export_dir = Path(args.out)
    print(f"exported #{report['final_id']} as a {report['members']}-member ensemble to {export_dir}")
    print(f"  from load import load_ensemble; ens = load_ensemble('{export_dir}')  # ens(x) → probabilities")
    return 0


def _deploy(run_dir: Path, sandbox: str | None) -> dict:
    from agent.deploy import deploy_final
    from agent.loop import SearchLoop
    loop = SearchLoop(run_dir=run_dir, resume=True, sandbox_name=sandbox)  # takes the run's lock
    try:
        loop._ensure_seed()
        return deploy_final(loop)
    finally:
        loop.close()
