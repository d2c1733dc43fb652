"""`ensnas run` (a new search) and `ensnas resume RUN` (continue after a stop or a kill)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path


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
    add_executor_options(p)
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
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(handler=run)

    r = sub.add_parser("resume", help="continue a run after a stop or kill -9 (optionally repairing its setup)")
    r.add_argument("run_dir")
    add_executor_options(r, resuming=True)
    r.add_argument("--cycles", type=int, help="raise the number of cycles")
    r.add_argument("--generator", help="use this generator from now on (repairs a run whose model moved or broke)")
    r.add_argument("--sandbox", help="use this sandbox backend from now on")
    r.add_argument("--timeout", type=float, help="seconds per sandbox evaluation from now on")
    r.add_argument("--workers", type=int, help="evaluations in parallel from now on")
    _budget_flags(r)
    r.add_argument("--quiet", action="store_true", help="no progress line")
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


def add_executor_options(p, resuming: bool = False) -> None:
    rest = " from now on" if resuming else ""
    p.add_argument("--executor", choices=["local", "ray"], help=f"where evaluations run{rest}: this machine "
                   "(default) or a Ray cluster")
    p.add_argument("--ray-address", help=f"the Ray cluster{rest} (default auto: RAY_ADDRESS, else one started "
                   "on this machine with `ray start --head`)")


def build_config(args):
    """The config file (or defaults) with the command-line flags applied on top."""
    from agent.config import RunConfig
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
    if args.executor:
        data["executor"] = args.executor
    if args.ray_address:
        data["ray"]["address"] = args.ray_address
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
            from evaluator.failures import ConfigError
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
    from agent.preflight import preflight
    from agent.run_lock import RunLocked, live_holder
    from agent.store import DB_NAME, RunDirError, check_run_dir, run_dir_state
    config = build_config(args)                       # an unreadable or invalid config stops here
    run_dir = Path(args.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{Path(config.task).stem}")
    check_run_dir(run_dir, create=True)
    holder = live_holder(run_dir)
    if holder is not None:
        raise RunLocked(f"{run_dir} is in use by {holder.describe()}; wait for it to finish or stop it")
    state = run_dir_state(run_dir)
    if state == "started":
        raise RunDirError(f"{run_dir} already holds a run; use `ensnas resume {run_dir}`")
    if state == "foreign":
        raise RunDirError(f"{run_dir}/{DB_NAME} is not an ensnas run database; choose another --run-dir")
    setup = preflight(config)                          # task, data, proposers, generator, sandbox
    print(f"run directory: {run_dir}  (resume with: ensnas resume {run_dir})")
    _say_setup(setup)
    print(f"report: {run_dir / 'report.html'}  (refreshed after every cycle; open it in a browser)")
    loop = SearchLoop(run_dir=run_dir, config=config, progress=not args.quiet, sandbox_name=setup.sandbox.backend)
    loop.store.set_state("sandbox", {"backend": setup.sandbox.backend, "reason": setup.sandbox.reason})
    return _finish(loop, args)


def resume(args) -> int:
    from agent.config import RunConfig
    from agent.generators.pin import describe, pin_resumed_run
    from agent.loop import SearchLoop
    from agent.preflight import preflight
    from agent.run_lock import RunLock
    from agent.run_state import resume_point
    from agent.store import RunDirError, RunStore, run_dir_state
    run_dir = Path(args.run_dir)
    lock = RunLock(run_dir).acquire()                      # one writer; before anything is read or written
    try:
        if run_dir_state(run_dir) == "incomplete":
            raise RunDirError(f"{run_dir} was stopped while it was being created, before its first cycle: start it "
                              f"again with `ensnas run --run-dir {run_dir}` (and the same options)")
        with RunStore(run_dir) as store:
            saved, generator = store.get_meta("config"), store.get_meta("generator")
            next_cycle = 1 + max((c["cycle"] for c in store.cycles() if c["status"] == "done"), default=0)
        if saved is None:
            raise RunDirError(f"{run_dir} has no saved config; it was never started")
        config = RunConfig.load(None, **_overrides(saved, args))
        # the model the run started with, unless --generator switches (agent/generators/pin.py)
        config, pinned, warning = pin_resumed_run(config, generator, switched=bool(args.generator),
                                                  next_cycle=next_cycle)
        setup = preflight(config)                          # e.g. the generator it used has gone: say so now
        with RunStore(run_dir) as store:
            if config.model_dump(mode="json") != saved:
                store.set_meta("config", config.model_dump(mode="json"))
            if pinned != generator:
                store.set_meta("generator", pinned)
                store.set_meta("versions", {**(store.get_meta("versions") or {}),
                                            "generator": describe(pinned["current"])})
            print(f"{run_dir}: {resume_point(store, config.cycles)}")
        if warning:
            print(f"warning: {warning}")
        _say_setup(setup)
        loop = SearchLoop(run_dir=run_dir, resume=True, progress=not args.quiet,
                          sandbox_name=setup.sandbox.backend, lock=lock)
        loop.store.set_state("sandbox", {"backend": setup.sandbox.backend, "reason": setup.sandbox.reason})
    except BaseException:
        lock.release()
        raise
    return _finish(loop, args)


def _overrides(saved: dict, args) -> dict:
    """The saved config with resume's safe overrides: things that change how, not what, is searched."""
    data = {**saved, "generator": dict(saved.get("generator") or {}), "sandbox": dict(saved.get("sandbox") or {})}
    if args.cycles:
        if args.cycles < saved.get("cycles", 0):
            from evaluator.failures import ConfigError
            raise ConfigError(f"--cycles {args.cycles} is below the {saved['cycles']} this run already has")
        data["cycles"] = args.cycles
    if args.generator:
        data["generator"].pop("model", None)
        data["generator"].update(_generator_from_flag(args.generator))
    if args.sandbox:
        data["sandbox"]["backend"] = args.sandbox
    if args.timeout:
        data["sandbox"]["timeout_s"] = args.timeout
    if args.workers:
        data["sandbox"]["workers"] = args.workers
    if args.executor:
        data["executor"] = args.executor
    if args.ray_address:
        data["ray"] = {**(saved.get("ray") or {}), "address": args.ray_address}
    if _budget(args):
        data["budget"] = {**(saved.get("budget") or {}), **_budget(args)}
    return data


def _say_setup(setup) -> None:
    print(setup.sandbox.line())
    if setup.generator:
        print(f"generator: {setup.generator}")
    for warning in setup.warnings:
        print(f"warning: {warning}")


def _finish(loop, args) -> int:
    from agent.report import refresh_report
    from agent.run_output import run_output
    from agent.summary import end_summary
    start = time.perf_counter()
    with run_output(loop.run_dir, verbose=getattr(args, "verbose", False), quiet=args.quiet) as log_path:
        report = loop.run()
        page = refresh_report(loop.store)  # after deploy: the final test scores are on the page
    print(end_summary(loop.store, report, loop.run_dir, wall_seconds=time.perf_counter() - start, html=page))
    print(f"log: {log_path}")
    return 0
