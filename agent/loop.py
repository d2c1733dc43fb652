"""The search loop: propose → pre-filter → sandbox → statistics → acceptance gate → store.

Resumable by construction: a cycle's candidates are inserted in one transaction before any is
evaluated; each finished evaluation is committed on its own; decisions are taken in candidate
order and each commits together with the new incumbent. After `kill -9`, `resume` re-evaluates
only what was in flight, decides only what was undecided, and never proposes a cycle twice.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from agent import progress, run_state, summary
from agent.config import RunConfig
from agent.evaluating import evaluate_cycle, evaluate_jobs, open_executor
from agent.gate import Gate
from agent.generators.pin import describe, pin_new_run
from agent.population.budgets import Spent, evaluations_left, exhausted
from agent.population.engine import Population
from agent.population.judge import GateJudge
from agent.population.plan import arms_for
from agent.prefilter import Prefilter
from agent.proposers.base import LoopResources, ProgramRecord, make_proposer
from agent.proposing import propose_cycle
from agent.report import refresh_report
from agent.run_lock import RunLock
from agent.store import CandidateRow, RunDirError, RunStore, run_dir_state
from evaluator.evaluate import Evaluation, Evaluator
from evaluator.failures import ConfigError
from evaluator.statistics import predicted_from_dict
from evaluator.tasks import TaskConfig, get_task
from sandbox import Limits, make_sandbox
from sandbox.executor import Executor, ExecutorEvaluator
from sandbox.select import resolve_sandbox_name
from theory.proxy import predicted_rank_correlation

log = logging.getLogger("ensnas")
RHO_S_WARN = 0.8


# Settings whose default changed after runs were made: a saved config without the key keeps the old behaviour.
LEGACY_DEFAULTS = {"pipeline": "off", "population": {"enabled": False}}


def record(row: CandidateRow) -> ProgramRecord:
    return ProgramRecord(id=row.id, source=row.source or "", status=row.status, reason=row.reason or "",
                         parent_id=row.parent_id, proposer=row.proposer, statistics=row.statistics,
                         decision=row.decision, diff=row.diff or "", param_count=row.param_count,
                         latency=row.latency)


def predicted(row: CandidateRow, members: int) -> float:
    return predicted_from_dict(row.statistics, members)


class SearchLoop:
    def __init__(self, *, run_dir: Path, config: RunConfig | None = None, resume: bool = False,
                 progress: bool = True, sandbox_name: str | None = None, lock: RunLock | None = None) -> None:
        self.run_dir = Path(run_dir)
        # one writer per run directory (agent/run_lock.py), held until run() or close() ends
        self.lock = (lock or RunLock(self.run_dir)).acquire(create=not resume)
        try:
            self._setup(config=config, resume=resume, progress=progress, sandbox_name=sandbox_name)
        except BaseException:
            self.lock.release()
            raise

    def _setup(self, *, config: RunConfig | None, resume: bool, progress: bool, sandbox_name: str | None) -> None:
        if resume:
            self.store = RunStore(self.run_dir)
            saved = self.store.get_meta("config")
            if saved is None:
                raise RunDirError(f"{self.run_dir} has no saved config; it was never started")
            self.config = RunConfig.model_validate({**LEGACY_DEFAULTS, **saved})
        else:
            if run_dir_state(self.run_dir) in ("started", "foreign"):  # "incomplete": killed while created
                raise RunDirError(f"{self.run_dir} already holds a run; use `ensnas resume {self.run_dir}`")
            # the generator's model is saved explicit, so a resume cannot drift to a newer default
            self.config, generator = pin_new_run(config or RunConfig())
            self.store = RunStore(self.run_dir, create=True)
            self.store.set_meta("config", self.config.model_dump(mode="json"))
            self.store.set_meta("versions", {**_versions(), "generator": describe(generator and generator["current"])})
            if generator:
                self.store.set_meta("generator", generator)
        c = self.config
        run_state.mark_running(self.store, self.lock.holder)
        self.task: TaskConfig = get_task(c.task, data_path=c.data_path)
        self.members = c.acceptance.members
        backend = resolve_sandbox_name(sandbox_name or c.sandbox.backend)
        sandbox = make_sandbox(backend)
        sandbox.check_available()  # here too on Ray: build checks and the final deployment run on this machine
        self.store.set_state("sandbox_backend", backend)
        limits = Limits(timeout_s=c.sandbox.timeout_s, memory_mb=c.sandbox.memory_mb, cpus=float(c.sandbox.threads),
                        gpu=c.sandbox.gpu)
        local_warm = c.sandbox.workers if c.sandbox.warm_start and c.executor == "local" else 0
        self.evaluator = Evaluator(task=self.task, sandbox=sandbox, limits=limits, threads=c.sandbox.threads,
                                   warm_start=local_warm)
        self.executor: Executor | None = None  # opened by run()
        self.gate = Gate(store=self.store, evaluator=self.evaluator, config=c.acceptance,
                         workers=c.sandbox.workers, timer=self.time_spent, executor=lambda: self.executor)
        self.prefilter = Prefilter(config=c.prefilter, novelty=c.novelty)
        for row in self.store.candidates():
            if row.source and row.status not in ("filtered", "proposal_failed"):
                self.prefilter.archive(row.id, row.source)
        adapters = self.store.adapters()
        proposers_evaluator = ExecutorEvaluator(evaluator=self.evaluator, executor=lambda: self.executor)
        self.resources = LoopResources(evaluator=proposers_evaluator, generator=c.generator, run_dir=self.run_dir,
                                       adapter_path=adapters[-1]["path"] if adapters else None)
        self.proposers = []
        for spec in c.proposers:
            proposer = make_proposer(spec.name, **spec.options)
            proposer.bind(self.resources)
            state = self.store.get_state(f"proposer:{spec.name}")
            if state:
                proposer.load_state_dict(state)
            self.proposers.append((spec, proposer))
        self.progress = progress
        self.timings: dict[str, float] = self.store.get_state("timings", {}) or {}
        self._timing_lock = threading.Lock()
        # proposals for cycle n see the decisions of cycles <= n - lag; lag 2 lets cycle n+1 be written
        # while cycle n trains, and the same lag without the overlap gives the same decisions
        self.lag = 1 if c.pipeline == "off" else 2
        self.population = (Population(store=self.store, config=c.population, members=self.members, seed=c.seed)
                           if c.population.enabled else None)
        self.arms = arms_for([spec.name for spec in c.proposers], _llm_operators(c))
        self._session_start = time.time()
        self._wall_before = float(self.store.get_state("spent_wall_s", 0.0) or 0.0)

    # ----------------------------------------------------------------------------------
    def run(self) -> dict:
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ensnas-propose") \
            if self.config.pipeline == "overlapped" else None
        try:
            self.executor = open_executor(self.config, self.evaluator)
            self.executor.prewarm()
            self._ensure_seed()
            self.store.set_state("stopped", None)
            for cycle in range(1, self.config.cycles + 1):
                if self.store.cycle_status(cycle) == "done":
                    continue
                reason = self._budget_reason(cycle)
                if reason:
                    log.info("stopping before cycle %d: %s (resume with a larger budget to continue)", cycle, reason)
                    self.store.set_state("stopped", {"before_cycle": cycle, "reason": reason})
                    break
                self._run_cycle(cycle, ahead)
            self.store.set_state("spent_wall_s", self.spent().wall_s)
            report = self.store.get_state("final_report")
            last = max((c["cycle"] for c in self.store.cycles() if c["status"] == "done"), default=0)
            if (report is None or report.get("after_cycle", last) < last) and self.config.deploy.export:
                from agent.deploy import deploy_final
                run_state.set_phase(self.store, "deploying")
                report = deploy_final(self)
            run_state.mark_done(self.store, "finished")
        except BaseException as exc:
            run_state.mark_done(self.store, "stopped", "interrupted" if isinstance(exc, KeyboardInterrupt)
                                else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if ahead is not None:
                ahead.shutdown(wait=True)
            self.close()
        return report or {}

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
            self.executor = None
        self.evaluator.close()  # no warm sandbox outlives the run
        for _, proposer in self.proposers:
            proposer.close()    # ... and no model server
        try:
            if self.lock.held:
                run_state.mark_closed(self.store)
                self.store.checkpoint()  # readers of a finished run then open it without a WAL
        except RunDirError as exc:
            log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            self.lock.release()

    def time_spent(self, key: str, seconds: float) -> None:
        with self._timing_lock:
            self.timings[key] = self.timings.get(key, 0.0) + seconds

    def spent(self) -> Spent:
        """Budget use so far: run time summed over sessions, candidate evaluations, generator tokens."""
        rows = self.store.candidates()
        return Spent(wall_s=self._wall_before + time.time() - self._session_start,
                     evaluations=sum(r.evaluations for r in rows if r.cycle > 0),
                     tokens=sum(_tokens(r.meta) for r in rows))

    def planned_evaluations(self) -> int:
        """Evaluations done or committed to: candidates past the pre-filter (independent of timing)."""
        return sum(1 for r in self.store.candidates() if r.cycle > 0 and r.status not in ("filtered", "proposal_failed"))

    # -- the seed program, evaluated once with enough instances for a pooled noise estimate
    def _ensure_seed(self) -> None:
        if self.store.get_state("incumbent") is not None:
            return
        source = self.task.seed_source()
        rows = [r for r in self.store.candidates(cycle=0) if r.proposer == "seed"]
        if not rows:
            with self.store.transaction() as db:
                self.store.insert_candidate(db, cycle=0, proposer="seed", parent_id=None, source=source, diff="",
                                            status="pending", meta={"task": self.task.name})
            rows = [r for r in self.store.candidates(cycle=0) if r.proposer == "seed"]
        seed_row = rows[0]
        k = max(2, self.config.noise_instances)
        if seed_row.status == "pending":
            log.info("evaluating the seed program (%d instances)…", k)
            run_state.set_phase(self.store, "seed")
            with progress.phase(f"seed program: training {k} instances in the sandbox"):
                result = self._evaluate(seed_row.id, seed_row.source, instances=k)
            if not result.ok:
                raise ConfigError(f"the task's seed program fails: {result.reason.value}: {result.detail}")
        seed_row = self.store.candidate(seed_row.id)
        if seed_row.status == "failed":
            raise ConfigError(f"the task's seed program fails: {seed_row.reason}: {seed_row.detail}")
        stats = seed_row.statistics
        with self.store.transaction() as db:
            db.execute("UPDATE candidates SET status = 'seed' WHERE id = ?", (seed_row.id,))
            self.store.set_state("incumbent", seed_row.id, db)
            self.store.set_state("seed_id", seed_row.id, db)
            prior = self.gate.set_prior(db, seed_row.id)
            if self.population is not None:
                self.population.add_seed(db, seed_row.id)
            self.prefilter.archive(seed_row.id, seed_row.source)
        log.info("seed: E_a %.4f, D̂ %.4f, predicted %d-ensemble Brier %.4f, seed-noise prior %s",
                 stats["member_error"], stats["diversity"], self.members,
                 predicted_from_dict(stats, self.members),
                 f"{prior.var_pair:.2e} ({prior.df:g} df)" if prior is not None else "off")

    # -- one cycle ------------------------------------------------------------------------
    def _run_cycle(self, cycle: int, ahead: ThreadPoolExecutor | None = None) -> None:
        if self.store.cycle_status(cycle) in (None, "proposing"):
            run_state.set_phase(self.store, "proposing", cycle)
            self._propose(cycle)
        pending = self.store.candidates(cycle=cycle, status="pending")
        following = None
        if self._propose_next(cycle):
            if ahead is not None:   # overlapped: the generator writes cycle n+1 while cycle n trains
                following = ahead.submit(self._propose, cycle + 1)
            else:                   # lagged: the same proposals, one after the other
                self._propose(cycle + 1)
        if pending:
            self._evaluate_all(pending, cycle)
        if following is not None:
            following.result()
        self._decide(cycle)
        self._finish_cycle(cycle)

    def _budget_reason(self, cycle: int) -> str | None:
        """Why the run stops before `cycle`, if it does. A cycle proposed ahead has spent its tokens
        already; evaluating it is what remains, so only wall time and evaluations can stop it."""
        spent = self.spent()
        if self.store.cycle_status(cycle) not in (None, "proposing"):
            spent = dataclasses.replace(spent, tokens=0)
        return exhausted(self.config.budget, spent)

    def _propose_next(self, cycle: int) -> bool:
        nxt = cycle + 1
        if self.lag < 2 or nxt > self.config.cycles or self.store.cycle_status(nxt) not in (None, "proposing"):
            return False
        if exhausted(self.config.budget, self.spent()):
            return False
        left = evaluations_left(self.config.budget, Spent(evaluations=self.planned_evaluations()))
        return left is None or left > 0

    def _propose(self, cycle: int) -> None:
        propose_cycle(self, cycle)   # agent/proposing.py

    def _evaluate(self, cand_id: int, source: str, instances: int = 2) -> Evaluation:
        """One candidate (the seed program) through the executor, recorded."""
        return evaluate_jobs(self, [(cand_id, source)], instances=instances)[cand_id]

    def _evaluate_all(self, pending: list[CandidateRow], cycle: int) -> None:
        evaluate_cycle(self, pending, cycle)   # agent/evaluating.py

    def _decide(self, cycle: int) -> None:
        """The gate, candidate by candidate in id order; each decision commits with its statistics
        (recomputed over any instances the gate trained) and the new incumbent. The population search
        asks the same gate (agent.population.judge) and places each candidate on its island."""
        run_state.set_phase(self.store, "deciding", cycle)
        if self.store.get_state("noise_prior", "absent") == "absent":  # a run from before the prior
            with self.store.transaction() as db:
                self.gate.set_prior(db, self.store.get_state("seed_id"))
        if self.population is not None:
            summary = self.population.decide(cycle, GateJudge(self.gate))
            for row in self.store.candidates(cycle=cycle, status=("accepted", "rejected")):
                log.info("  #%d (%s): %s", row.id, row.arm or row.proposer, row.reason)
            log.info("cycle %d: %d entered; archives %s; incumbent #%d%s", cycle, summary["entered"],
                     summary["archive_sizes"], summary["incumbent"],
                     "".join(f"; #{m['candidate']} {m['from']}→{m['to']} {'entered' if m['entered'] else 'dominated'}"
                             for m in summary["migrations"]))
        for row in ([] if self.population is not None else self.store.candidates(cycle=cycle, status="evaluated")):
            incumbent_id = self.store.get_state("incumbent")
            info = self.gate.decide(row.id, incumbent_id)
            with self.store.transaction() as db:
                self.store.set_decision(db, row.id, accepted=info["accept"], decision=info)
                for cid in (row.id, incumbent_id):
                    stats = self.gate.statistics(cid, self.store.candidate(cid).statistics)
                    if stats is not None:
                        self.store.set_statistics(db, cid, stats)
                if info["accept"]:
                    self.store.set_state("incumbent", row.id, db)
            log.info("  #%d (%s): %s", row.id, row.proposer, info["reason"])
        for spec, proposer in self.proposers:
            for row in self.store.candidates(cycle=cycle):
                if row.proposer == spec.name:
                    proposer.observe(None, record(row))

    def _finish_cycle(self, cycle: int) -> None:
        rows = self.store.candidates(cycle=cycle)
        for line in summary.cycle_lines(cycle, rows):
            log.info(line)
        diagnostic = proxy_diagnostic(rows)
        if self.population is not None:
            diagnostic["population"] = self.store.get_state(f"population:cycle:{cycle}")
        note = summary.proxy_note(cycle, diagnostic, rows, RHO_S_WARN)
        if note:
            log.warning(note)
        self._maybe_ce_update(cycle)
        with self.store.transaction() as db:
            for spec, proposer in self.proposers:
                self.store.set_state(f"proposer:{spec.name}", proposer.state_dict(), db)
            self.store.set_state("timings", self.timings, db)
            self.store.set_state("spent_wall_s", self.spent().wall_s, db)
            db.execute("UPDATE cycles SET status = 'done', finished = ?, incumbent_after = ?, diagnostic = ?"
                       " WHERE cycle = ?", (time.time(), self.store.get_state("incumbent"),
                                            json.dumps(diagnostic), cycle))
        refresh_report(self.store)  # RUN/report.html, for watching a long run; logs, never raises

    def _maybe_ce_update(self, cycle: int) -> None:
        ce = self.config.ce_update
        uses_llm = any(spec.name == "llm" for spec, _ in self.proposers)
        if not (ce.enabled and uses_llm and cycle % ce.every == 0):
            return
        if any(a["cycle"] == cycle for a in self.store.adapters()):
            return
        from agent.ce_update import fine_tune_on_elites
        run_state.set_phase(self.store, "ce_update", cycle)
        start = time.perf_counter()
        with progress.phase(f"cycle {cycle}: CE update (LoRA fine-tune of the generator)"):
            path = fine_tune_on_elites(self, cycle)
        self.time_spent("ce_update", time.perf_counter() - start)
        if path is not None:
            self.resources.adapter_path = str(path)


def _llm_operators(config: RunConfig) -> list[str]:
    """The LLM's bandit arms: the configured operators, plus one per operator hint it was given."""
    hints = [len(((spec.options.get("config") or {}).get("hints") or [])) for spec in config.proposers
             if spec.name == "llm"]
    return list(config.population.llm_operators) + [f"hint:{i}" for i in range(max(hints, default=0))]


def _tokens(meta: dict) -> int:
    """Generator tokens a proposal used (prompt + completion, every repair turn), from its meta."""
    return int(meta.get("tokens") or 0) + int(meta.get("prompt_tokens") or 0)


def proxy_diagnostic(rows: list[CandidateRow]) -> dict:
    """docs/theory.md T6.6 per cycle: σ²_arch from the spread of the candidates' scores, σ²_noise from
    each candidate's two instances; SNR and the predicted rank correlation of proxy vs truth."""
    stats = [r.statistics for r in rows if r.statistics]
    if len(stats) < 2:
        return {"candidates": len(stats), "rho_s": None}
    scores = np.array([s["member_error"] for s in stats])
    # a score is the mean of K instances: its noise variance is the instance variance / K
    noise = float(np.mean([s["noise_variance"] / len(s["instances"]) for s in stats]))
    arch = max(0.0, float(scores.var(ddof=1)) - noise)
    snr = arch / noise if noise > 0 else float("inf")
    return {"candidates": len(stats), "var_arch": arch, "var_noise": noise, "snr": snr,
            "rho_s": float(predicted_rank_correlation(arch, noise)) if noise > 0 else 1.0}


def _versions() -> dict:
    import platform
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "peft", "trl", "datasketch", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - optional packages
            out[name] = None
    return out
