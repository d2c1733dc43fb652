"""`ensnas run` (a new search) and `ensnas resume RUN` (continue after a stop or a kill)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agent.config import RunConfig
from evaluator.failures import ConfigError


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
    p.add_argument("--population", action="store_true",
                   help="the population search: island Pareto archives and a bandit over proposers and operators")
    p.add_argument("--islands", type=int, help="islands of the population search (implies --population)")
    p.add_argument("--hill-climber", action="store_true",
                   help="no population: one incumbent, a candidate kept only if it beats it")
    p.add_argument("--pipeline", choices=["off", "lagged", "overlapped"],
                   help="overlapped (default): write cycle n+1's proposals while cycle n trains")
    _budget_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)

    r = sub.add_parser("resume", help="continue a run after a stop or kill -9")
    r.add_argument("run_dir")
    r.add_argument("--sandbox", help="override the backend for the rest of the run")
    r.add_argument("--cycles", type=int, help="raise the number of cycles")
    _budget_flags(r)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(handler=resume)


def _budget_flags(p) -> None:
    p.add_argument("--max-wall", type=duration, metavar="TIME",
                   help="stop at the first cycle boundary past this run time (seconds, or 90m, 2h), summed over resumes")
    p.add_argument("--max-evaluations", type=int, metavar="N", help="stop after N candidate evaluations")
    p.add_argument("--max-tokens", type=int, metavar="N", help="stop after N generator tokens (prompt + completion)")


def duration(text: str) -> float:
    """Seconds from '3600', '90s', '45m' or '2h'."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1].lower() in units:
            value = float(text[:-1]) * units[text[-1].lower()]
        else:
            value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use seconds, or 90m, 2h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive, got {text!r}")
    return value


def _budget(args) -> dict:
    given = {"max_wall_s": args.max_wall, "max_evaluations": args.max_evaluations, "max_tokens": args.max_tokens}
    return {k: v for k, v in given.items() if v is not None}


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
    if args.population or args.islands:
        data["population"]["enabled"] = True
    if args.islands:
        data["population"]["islands"] = args.islands
    if args.hill_climber:
        if args.population or args.islands:
            raise ConfigError("--hill-climber and --population/--islands contradict each other")
        data["population"]["enabled"] = False
    if args.pipeline:
        data["pipeline"] = args.pipeline
    data["budget"].update(_budget(args))
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
        if args.cycles or _budget(args):
            with RunStore(Path(args.run_dir)) as store:
                saved = store.get_meta("config") or {}
                if args.cycles:
                    saved["cycles"] = args.cycles
                saved["budget"] = {**saved.get("budget", {}), **_budget(args)}
                RunConfig.load(None, **{**saved})  # a bad value is a usage error before anything is written
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
