"""End of a run: train the final incumbent and the seed as real M-member ensembles, report
test-split metrics, and export the winner (program + weights) loadable with plain PyTorch."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from agent import export_load, progress
from evaluator import preprocessing
from evaluator.statistics import brier_per_example, ensemble_metrics, one_hot
from evaluator.worker import feature_subset

log = logging.getLogger("ensnas")
DEPLOY_SEED_BASE = 1000  # fresh seeds: the deployed members are not the search's instances


def deploy_final(loop) -> dict:
    store, evaluator, m = loop.store, loop.evaluator, loop.config.deploy.members
    seed_id, final_id = store.get_state("seed_id"), store.get_state("incumbent")
    y_test = evaluator.data.y_test
    done = [c["cycle"] for c in store.cycles() if c["status"] == "done"]
    report = {"members": m, "seed_id": seed_id, "final_id": final_id, "after_cycle": max(done, default=0)}
    export_dir = loop.run_dir / "export"
    for role, cid in (("final", final_id), ("seed", seed_id)):
        if role == "seed" and seed_id == final_id:
            report["seed"] = report["final"]
            break
        row = store.candidate(cid)
        log.info("deploying %s program #%d as a %d-member ensemble…", role, cid, m)
        keep = Path(tempfile.mkdtemp(prefix="ensnas-deploy-"))
        try:
            with progress.phase(f"deploy: training the {role} program #{cid} as a {m}-member ensemble"):
                result = evaluator.evaluate(row.source, instances=m, seed_base=DEPLOY_SEED_BASE,
                                            keep_dir=keep if role == "final" else None, save_weights=role == "final")
            if not result.ok:
                report[role] = {"failed": result.reason.value, "detail": result.detail}
                continue
            report[role] = ensemble_metrics(result.test_probs, y_test)
            targets = one_hot(y_test, result.test_probs.shape[-1])
            report[role]["single_model_brier"] = float(brier_per_example(result.test_probs, targets).mean())
            if role == "final":
                _export(export_dir, row.source, keep / "out", result.seeds, evaluator, result.feature_fraction,
                        result.test_probs.mean(0))
                report["export_dir"] = export_dir.relative_to(loop.run_dir).as_posix()  # a copy finds its own
        finally:
            shutil.rmtree(keep, ignore_errors=True)
    if "brier" in report.get("final", {}) and "brier" in report.get("seed", {}):
        report["test_brier_gain"] = report["seed"]["brier"] - report["final"]["brier"]
    if seed_id != final_id:
        report["validation_gain"] = _validation_gain(loop, seed_id, final_id)
    store.set_state("final_report", report)
    (loop.run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _validation_gain(loop, seed_id: int, final_id: int) -> dict:
    """The acceptance test of the final incumbent against the seed itself (not step by step):
    the predicted M-ensemble gain on the validation split and its one-sided bounds."""
    from evaluator.acceptance import acceptance_test
    seed_val, _ = loop.store.load_predictions(seed_id)
    final_val, _ = loop.store.load_predictions(final_id)
    d = acceptance_test(seed_val, final_val, loop.evaluator.data.y_val, loop.config.acceptance,
                        noise_variance=loop.store.get_state("noise_variance"))
    return {k: getattr(d, k) for k in ("predicted_improvement", "lower_bound", "upper_bound", "alpha", "members",
                                       "accept")}


def export_path(run_dir: Path, report: dict) -> Path:
    """Where a report's export lives: ``export_dir`` is relative to the run directory (reports of
    older runs held whatever path the run was started with; those resolve to RUN/export)."""
    stored = Path(report.get("export_dir") or "export")
    return Path(run_dir) / (stored if not stored.is_absolute() and ".." not in stored.parts else "export")


def _export(export_dir: Path, source: str, out: Path, seeds: list[int], evaluator, fraction: float,
            test_probs: np.ndarray) -> None:
    tmp = export_dir.with_name(export_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "program.py").write_text(source)
    # plain-PyTorch loader and the task's preprocessing, copied as files (the export needs no ensnas)
    shutil.copy(Path(export_load.__file__), tmp / "load.py")
    shutil.copy(Path(preprocessing.__file__), tmp / "preprocess.py")
    shape = tuple(evaluator.data.input_shape)
    members = []
    for seed in seeds:
        shutil.copy(out / f"weights_{seed}.pt", tmp / f"member_{seed}.pt")
        keep = feature_subset(fraction, shape, seed)
        view = None if keep is None else {"mode": "columns" if len(shape) == 1 else "mask", "features": keep.tolist()}
        members.append({"seed": seed, "weights": f"member_{seed}.pt", "view": view,
                        "input_shape": [len(keep)] if view and view["mode"] == "columns" else list(shape)})
    manifest = {"task": evaluator.task.name, "input_shape": list(shape), "num_classes": evaluator.data.num_classes,
                "members": members, "combine": "mean of softmax probabilities",
                "preprocessing": evaluator.data.preprocessing,
                "test_probabilities": "test_probabilities.npy: this ensemble's probabilities on the task's test "
                                      "split, as the run scored them"}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    # what the run itself scored on the task's test split, to check a load against
    np.save(tmp / "test_probabilities.npy", np.asarray(test_probs, np.float32))
    shutil.rmtree(export_dir, ignore_errors=True)
    tmp.rename(export_dir)
