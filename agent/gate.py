"""The run's acceptance gate: the sequential test (evaluator.sequential) over stored instances,
training the instances it asks for.

Every instance it trains has a new seed, is stored (artifact, atomic) before it is used, and is
tagged with the candidate whose decision asked for it. The test replays its looks from the
stored instances each time, so after `kill -9` a resumed run trains only what was missing and
decides exactly as an uninterrupted one. An incumbent's extra instances stay and serve every
later comparison against it.

    gate.compare(incumbent_id, candidate_id) -> Verdict   accept / reject, training as asked
    gate.dominance(a_id, b_id) -> "better" | "worse" | "undecided"   one reading, no training
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import numpy as np

from agent.store import RunStore
from evaluator.acceptance import AcceptanceConfig, acceptance_test, noise_variance_from_instances
from evaluator.paired import Instances, NoisePrior, noise_prior_from_instances
from evaluator.sequential import Dominance, Verdict, dominance, sequential_test
from evaluator.statistics import compute_statistics
from sandbox.executor import EvalJob, LocalExecutor, job_id_for

if TYPE_CHECKING:
    from evaluator.evaluate import Evaluator
    from sandbox.executor import Executor

log = logging.getLogger("ensnas")


class Gate:
    def __init__(self, *, store: RunStore, evaluator: "Evaluator", config: AcceptanceConfig, workers: int = 2,
                 timer: Callable[[str, float], None] | None = None,
                 executor: Callable[[], "Executor | None"] | None = None) -> None:
        """executor: the run's (instances train where its evaluations do, e.g. on Ray); when it gives
        None, `workers` threads here."""
        self.store, self.evaluator, self.config = store, evaluator, config
        self.executor = executor or (lambda: None)
        self.labels = evaluator.data.y_val
        self.workers = max(1, workers)
        self.timer = timer or (lambda key, seconds: None)

    # -- the noise prior, from the seed program's instances (set once, so every replay sees the same)
    def set_prior(self, db, seed_id: int) -> NoisePrior | None:
        """Store the prior (and the fixed test's pooled noise) from the seed's instances, in `db`'s transaction."""
        val = self.store.load_instances(seed_id).val
        prior = None
        if len(val) >= 4 and self.config.prior_df > 0:
            prior = noise_prior_from_instances(val, self.labels, self.config.members, max_df=self.config.prior_df)
        self.store.set_state("noise_prior", prior.as_dict() if prior else None, db)
        noise = noise_variance_from_instances(val, self.labels, self.config.members) if len(val) >= 4 else None
        self.store.set_state("noise_variance", noise, db)
        return prior

    @property
    def prior(self) -> NoisePrior | None:
        return NoisePrior.from_dict(self.store.get_state("noise_prior"))

    def instances(self, cand_id: int) -> Instances:
        stored = self.store.load_instances(cand_id)
        return Instances(stored.seeds, stored.val)

    # -- the API the loop (and the population search) calls ----------------------------------------
    def compare(self, incumbent_id: int, candidate_id: int) -> Verdict:
        """Run the sequential test to a decision, training the seeds it asks for (both sides in parallel)."""
        while True:
            verdict = sequential_test(self.instances(incumbent_id), self.instances(candidate_id), self.labels,
                                      self.config, self.prior)
            if verdict.outcome != "more":
                return verdict
            jobs = [(candidate_id, s) for s in verdict.need_candidate] + [(incumbent_id, s) for s in verdict.need_incumbent]
            failure = self._train(jobs, origin=candidate_id)
            if failure:
                return Verdict("reject", looks=verdict.looks, reason=f"rejected: {failure}")

    def dominance(self, a_id: int, b_id: int) -> Dominance:
        """Is a's predicted M-ensemble error confidently lower than b's, on the instances stored now?"""
        return dominance(self.instances(a_id), self.instances(b_id), self.labels, members=self.config.members,
                         alpha=self.config.alpha, prior=self.prior)

    def decide(self, candidate_id: int, incumbent_id: int) -> dict:
        """The decision record the loop stores: accept, the T2 numbers, the looks and the gate's cost."""
        if self.config.method == "fixed":
            base, cand = self.store.load_predictions(incumbent_id)[0], self.store.load_predictions(candidate_id)[0]
            decision = acceptance_test(base, cand, self.labels, self.config,
                                       noise_variance=self.store.get_state("noise_variance"))
            info = dict(decision.as_dict(), method="fixed")
        else:
            info = dict(self.compare(incumbent_id, candidate_id).as_decision(self.config), method="sequential")
        cand, inc = self.store.load_instances(candidate_id), self.store.load_instances(incumbent_id)
        info["baseline"] = incumbent_id
        info["instances"] = {
            "candidate": len(cand.seeds),
            "candidate_trained": [s for s, o in zip(cand.seeds, cand.origin) if o == candidate_id],
            "incumbent_trained": [s for s, o in zip(inc.seeds, inc.origin) if o == candidate_id],
        }
        return info

    def statistics(self, cand_id: int, current: dict | None) -> dict | None:
        """T1 statistics over all of a candidate's stored instances, if the gate added some since
        `current` was computed; None when nothing changed."""
        val = self.store.load_instances(cand_id).val
        if len(val) < 2 or (current and len(current.get("instances", [])) == len(val)):
            return None
        return compute_statistics(val, self.labels).as_dict()

    # -- training the instances the test asks for ---------------------------------------------------
    def _train(self, jobs: list[tuple[int, int]], *, origin: int) -> str | None:
        """Train one instance per (candidate, seed), store each as it finishes; the first failure (in
        job order), if any. A job is named by candidate and seed: run again after a lost node or a
        restart it is the same job, and add_instances keeps a seed it already holds."""
        executor = self.executor()
        if executor is None:
            with LocalExecutor(evaluator=self.evaluator, workers=min(self.workers, len(jobs))) as local:
                return self._train_on(local, jobs, origin)
        return self._train_on(executor, jobs, origin)

    def _train_on(self, executor: "Executor", jobs: list[tuple[int, int]], origin: int) -> str | None:
        owners: dict[str, tuple[int, int, int]] = {}
        for i, (cand_id, seed) in enumerate(jobs):
            log.info("    gate: training #%d seed %d for the decision on #%d", cand_id, seed, origin)
            job = EvalJob(source=self.store.candidate(cand_id).source, instances=1, seed_base=seed,
                          job_id=job_id_for(cand_id, seed_base=seed, instances=1))
            owners[job.job_id] = (i, cand_id, seed)
            executor.submit(job)
        failures: list[str] = []
        finished, stored = {}, 0
        for job, result in executor.completed():
            i, cand_id, seed = owners[job.job_id]
            self.timer("sandbox", max(result.sandbox_seconds - sum(result.train_seconds), 0.0))
            self.timer("training", sum(result.train_seconds))
            finished[i] = (cand_id, seed, result)
            while stored in finished:  # in job order, whichever finished first: the same artifact everywhere
                cand_id, seed, result = finished.pop(stored)
                stored += 1
                if not result.ok:
                    failures.append(f"instance seed {seed} of #{cand_id} failed: {result.reason.value}: "
                                    f"{result.detail[:200]}")
                    continue
                self.store.add_instances(cand_id, seeds=result.seeds, val=result.val_probs, test=result.test_probs,
                                         origin=origin)
        return failures[0] if failures else None


def gate_cost(rows) -> dict:
    """Instances trained per decision, over the rows' sequential decisions (for `ensnas status`)."""
    decided = [r.decision for r in rows if r.decision and "instances" in r.decision]
    if not decided:
        return {"decisions": 0}
    cand = np.array([d["instances"]["candidate"] for d in decided], float)
    inc = np.array([len(d["instances"]["incumbent_trained"]) for d in decided], float)
    looks = [d["looks"][-1]["instances"] for d in decided if d.get("looks")]
    return {"decisions": len(decided), "candidate": float(cand.mean()), "incumbent": float(inc.mean()),
            "total": float((cand + inc).mean()),
            "stopped_at": {int(k): looks.count(k) for k in sorted(set(looks))}}
