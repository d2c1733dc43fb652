"""`ensnas report RUN [--out FILE]`: write the run's self-contained HTML report."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML page of a run (opens from disk, no server)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="where to write it (default RUN/report.html)")
    p.set_defaults(handler=report)


def report(args) -> int:
    from agent.report import open_store, write_report
    store = open_store(Path(args.run_dir))
    try:
        path = write_report(store, Path(args.out) if args.out else None)
    finally:
        store.close()
    print(path)
    return 0
