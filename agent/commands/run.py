"""`ensnas run` (a new search) and `ensnas resume RUN` (continue after a stop or a kill)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from agent.config import RunConfig


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="start a search (defaults: bundled model, digits task, CPU, offline)")
    p.add_argument("--config", help="YAML run config (fields of agent.config.RunConfig)")
    p.add_argument("--task", help="bundled task name or task .yaml")
    p.add_argument("--data-path", help="local copy of the task's dataset")
    p.add_argument("--generator", help="LLM: a bundled model name (ensnas models), a .gguf file, an HF checkpoint "
                                       "directory, or an http(s)://host/v1 endpoint")
    p.add_argument("--proposer", action="append", help="proposer name (repeatable): llm, random, evolution, ...")
    p.add_argument("--candidates", type=int, help="candidates per cycle per proposer")
    p.add_argument("--cycles", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--sandbox", help="auto | docker | process | subprocess")
    p.add_argument("--members", type=int, help="deployed ensemble size M")
    p.add_argument("--run-dir", help="where the run lives (default runs/<time>-<task>)")
    p.add_argument("--no-novelty", action="store_true", help="turn the MinHash novelty filter off")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)

    r = sub.add_parser("resume", help="continue a run after a stop or kill -9")
    r.add_argument("run_dir")
    r.add_argument("--sandbox", help="override the backend for the rest of the run")
    r.add_argument("--cycles", type=int, help="raise the number of cycles")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(handler=resume)


def build_config(args) -> RunConfig:
    """The config file (or defaults) with the command-line flags applied on top."""
    data = RunConfig.load(args.config).model_dump()
    for field in ("task", "data_path", "cycles", "seed"):
        if getattr(args, field, None) is not None:
            data[field] = getattr(args, field)
    if args.proposer:
        data["proposers"] = [{"name": name, "candidates": args.candidates or 3} for name in args.proposer]
    elif args.candidates:
        for spec in data["proposers"]:
            spec["candidates"] = args.candidates
    if args.generator:
        data["generator"] = {**data["generator"], **_generator_from_flag(args.generator)}
    if args.sandbox:
        data["sandbox"]["backend"] = args.sandbox
    if args.members:
        data["acceptance"]["members"] = data["deploy"]["members"] = args.members
    if args.no_novelty:
        data["novelty"]["enabled"] = False
    return RunConfig.load(None, **data)


def _generator_from_flag(value: str) -> dict:
    """A bundled name or a .gguf → llama.cpp; http(s)://… → OpenAI-compatible; a directory → transformers."""
    from agent.generators.catalogue import resolve_generator
    return resolve_generator(value)


def run(args) -> int:
    from agent.loop import SearchLoop
    config = build_config(args)
    run_dir = Path(args.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{config.task.replace('/', '_')}")
    print(f"run directory: {run_dir}  (resume with: ensnas resume {run_dir})")
    print(f"report: {run_dir / 'report.html'}  (refreshed after every cycle; open it in a browser)")
    loop = SearchLoop(run_dir=run_dir, config=config, progress=not args.quiet)
    return _finish(loop)


def resume(args) -> int:
    from agent.loop import SearchLoop
    from agent.run_lock import RunLock
    from agent.store import RunStore
    lock = RunLock(Path(args.run_dir)).acquire()  # before the config is touched
    try:
        if args.cycles:
            with RunStore(Path(args.run_dir)) as store:
                saved = store.get_meta("config") or {}
                saved["cycles"] = args.cycles
                store.set_meta("config", saved)
        loop = SearchLoop(run_dir=Path(args.run_dir), resume=True, progress=not args.quiet,
                          sandbox_name=args.sandbox, lock=lock)
    except BaseException:
        lock.release()
        raise
    return _finish(loop)


def _finish(loop) -> int:
    from agent.report import refresh_report
    report = loop.run()
    print(summary_text(loop.store, report))
    page = refresh_report(loop.store)  # after deploy: the final test scores are on the page
    if page is not None:
        print(f"report: {page}")
    return 0


def summary_text(store, report: dict) -> str:
    from agent.commands.inspect import counts_line
    from agent.deploy import export_path
    lines = [counts_line(store)]
    if report.get("final") and "brier" in report["final"]:
        f, s = report["final"], report.get("seed", {})
        lines.append(f"final #{report['final_id']} vs seed #{report['seed_id']}, {report['members']}-member ensembles, "
                     f"test split: Brier {f['brier']:.4f} vs {s.get('brier', float('nan')):.4f}, "
                     f"accuracy {f['accuracy']:.4f} vs {s.get('accuracy', float('nan')):.4f}")
        export_dir = export_path(store.dir, report)
        lines.append(f"exported to {export_dir} (load with: python -c \"import sys; sys.path.insert(0, "
                     f"'{export_dir}'); from load import load_ensemble; print(load_ensemble('{export_dir}'))\")")
    elif report:
        lines.append(json.dumps(report))
    return "\n".join(lines)
