"""End of a run: train the final incumbent and the seed as real M-member ensembles, report
test-split metrics, and export the winner (program + weights) loadable with plain PyTorch."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from evaluator.statistics import brier_per_example, ensemble_metrics, one_hot
from evaluator.worker import feature_subset

log = logging.getLogger("ensnas")
DEPLOY_SEED_BASE = 1000  # fresh seeds: the deployed members are not the search's instances

LOADER = '''"""Load this exported ensemble with plain PyTorch:  ens = load_ensemble("."); probs = ens(x)."""
import importlib.util
import json
from pathlib import Path

import torch


class Ensemble(torch.nn.Module):
    def __init__(self, members, views):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.views = views

    def forward(self, x):
        probs = []
        for member, view in zip(self.members, self.views):
            xin = x
            if view is not None:
                idx = torch.as_tensor(view["features"])
                flat = x.flatten(1)
                if view["mode"] == "columns":
                    xin = flat[:, idx]
                else:
                    mask = torch.zeros(flat.shape[1], dtype=x.dtype)
                    mask[idx] = 1
                    xin = (flat * mask).view_as(x)
            probs.append(torch.softmax(member(xin), dim=-1))
        return torch.stack(probs).mean(0)


def load_ensemble(directory="."):
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    spec = importlib.util.spec_from_file_location("program", directory / "program.py")
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    members, views = [], []
    for m in manifest["members"]:
        model = program.build_model(tuple(m["input_shape"]), manifest["num_classes"])
        model.load_state_dict(torch.load(directory / m["weights"], weights_only=True))
        model.eval()
        members.append(model)
        views.append(m.get("view"))
    return Ensemble(members, views).eval()
'''


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
            result = evaluator.evaluate(row.source, instances=m, seed_base=DEPLOY_SEED_BASE,
                                        keep_dir=keep if role == "final" else None, save_weights=role == "final")
            if not result.ok:
                report[role] = {"failed": result.reason.value, "detail": result.detail}
                continue
            report[role] = ensemble_metrics(result.test_probs, y_test)
            targets = one_hot(y_test, result.test_probs.shape[-1])
            report[role]["single_model_brier"] = float(brier_per_example(result.test_probs, targets).mean())
            if role == "final":
                _export(export_dir, row.source, keep / "out", result.seeds, evaluator, result.feature_fraction)
        finally:
            shutil.rmtree(keep, ignore_errors=True)
    if "brier" in report.get("final", {}) and "brier" in report.get("seed", {}):
        report["test_brier_gain"] = report["seed"]["brier"] - report["final"]["brier"]
    report["export_dir"] = export_dir.relative_to(loop.run_dir).as_posix()  # a copied run dir finds its own
    store.set_state("final_report", report)
    (loop.run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def export_path(run_dir: Path, report: dict) -> Path:
    """Where a report's export lives: ``export_dir`` is relative to the run directory (reports of
    older runs held whatever path the run was started with; those resolve to RUN/export)."""
    stored = Path(report.get("export_dir") or "export")
    return Path(run_dir) / (stored if not stored.is_absolute() and ".." not in stored.parts else "export")


def _export(export_dir: Path, source: str, out: Path, seeds: list[int], evaluator, fraction: float) -> None:
    tmp = export_dir.with_name(export_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "program.py").write_text(source)
    (tmp / "load.py").write_text(LOADER)
    shape = tuple(evaluator.data.input_shape)
    members = []
    for seed in seeds:
        shutil.copy(out / f"weights_{seed}.pt", tmp / f"member_{seed}.pt")
        keep = feature_subset(fraction, shape, seed)
        view = None if keep is None else {"mode": "columns" if len(shape) == 1 else "mask", "features": keep.tolist()}
        members.append({"seed": seed, "weights": f"member_{seed}.pt", "view": view,
                        "input_shape": [len(keep)] if view and view["mode"] == "columns" else list(shape)})
    manifest = {"task": evaluator.task.name, "input_shape": list(shape), "num_classes": evaluator.data.num_classes,
                "members": members, "combine": "mean of softmax probabilities"}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(export_dir, ignore_errors=True)
    tmp.rename(export_dir)
