"""Predict with an exported ensemble inside a sandbox: the export's program.py is the candidate's code.

`load.py` in an export imports program.py in the caller's own process, with the caller's rights
(weights are safe: torch.load(weights_only=True)). `predict_export` runs the same computation as
a worker job of kind "predict" in any sandbox backend: program, member weights and the inputs go
in read-only, each member's probabilities come back, and the host checks them and averages
(the manifest's "mean of softmax probabilities"), exactly what `load_ensemble(dir)(x)` returns.

Inputs are arrays already in the model's input space (what the task's loader produced), or with
raw=True the task's raw inputs, to which `prepare_inputs` applies the preprocessing the manifest
records, with ensnas' own evaluator.preprocessing on the host (not the export's preprocess.py copy,
which is as untrusted as its program.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from evaluator import preprocessing
from evaluator.evaluate import read_verdict
from evaluator.failures import ConfigError, EvaluationFailed, FailureReason
from evaluator.parse_lock import load_npy
from evaluator.statistics import validate_probabilities
from evaluator.worker import PROGRAM_NAME
from sandbox.base import Limits, Sandbox, SandboxJob

MAX_PROBABILITIES_BYTES = 1 << 30


def read_manifest(export_dir: Path) -> dict:
    export_dir = Path(export_dir)
    try:
        manifest = json.loads((export_dir / "manifest.json").read_text())
        members = manifest["members"]
        if not members or not all(isinstance(m.get("weights"), str) for m in members):
            raise ValueError("no members")
        int(manifest["num_classes"]), list(manifest["input_shape"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{export_dir} is not an ensnas export (manifest.json: {exc}); "
                          "make one with `ensnas export RUN --out DIR`") from exc
    for m in members:
        weights = export_dir / m["weights"]
        if Path(m["weights"]).name != m["weights"] or not weights.is_file():
            raise ConfigError(f"{export_dir}: member weights {m['weights']!r} are missing")
    if not (export_dir / PROGRAM_NAME).is_file():
        raise ConfigError(f"{export_dir} has no {PROGRAM_NAME}")
    return manifest


def prepare_inputs(manifest: dict, inputs, *, raw: bool = False) -> np.ndarray:
    """The arrays the members are fed: float32 in the manifest's input shape. raw=True: `inputs` are
    the task's raw inputs (an array, or a table: DataFrame / dict of columns / row dicts) and the
    manifest's preprocessing makes them model inputs first."""
    if raw:
        spec = manifest.get("preprocessing")
        if not spec:
            raise ConfigError("this export records no input preprocessing: pass inputs already in the model's "
                              "input space (without --raw)")
        try:
            inputs = preprocessing.apply(spec, inputs)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the raw inputs do not fit the export's preprocessing: {exc}") from exc
    x = np.asarray(inputs)
    if x.dtype.kind not in "fiub":
        raise ConfigError(f"inputs must be numeric, got dtype {x.dtype}")
    shape = tuple(manifest["input_shape"])
    if x.ndim == len(shape) and x.shape == shape:
        x = x[None]  # a single example
    if tuple(x.shape[1:]) != shape:
        raise ConfigError(f"inputs have shape {x.shape}, expected (n, {', '.join(map(str, shape))}) "
                          f"as in the export's manifest")
    return np.ascontiguousarray(x, dtype=np.float32)


def predict_export(export_dir: Path, inputs, *, sandbox: Sandbox, limits: Limits = Limits(), raw: bool = False,
                   threads: int = 1, work_root: Path | None = None) -> np.ndarray:
    """The ensemble's probabilities [n, num_classes] for `inputs` (raw task inputs with raw=True),
    computed in `sandbox`. EvaluationFailed (typed) when the export's code fails there; ConfigError
    for a bad export or inputs."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    x = prepare_inputs(manifest, inputs, raw=raw)
    k, m = int(manifest["num_classes"]), len(manifest["members"])
    need_mb = int(m * len(x) * k * 4 / 2**20) + 16
    if need_mb > limits.max_out_mb:
        limits = dataclasses.replace(limits, max_out_mb=need_mb)
    root = Path(tempfile.mkdtemp(prefix="ensnas-predict-", dir=work_root))
    try:
        work, data = root / "work", root / "data"
        (work / "out").mkdir(parents=True)
        data.mkdir()
        shutil.copy(export_dir / PROGRAM_NAME, work / PROGRAM_NAME)
        for member in manifest["members"]:
            shutil.copy(export_dir / member["weights"], work / member["weights"])
        np.save(data / "inputs.npy", x)
        job = {"kind": "predict", "num_classes": k, "threads": threads,
               "members": [{"weights": mm["weights"], "input_shape": mm["input_shape"], "view": mm.get("view")}
                           for mm in manifest["members"]]}
        (work / "job.json").write_text(json.dumps(job))
        for p in [root, *root.rglob("*")]:  # the sandbox's unprivileged user reads them; writes only out/
            p.chmod(0o777 if p.name == "out" else 0o755 if p.is_dir() else 0o644)
        run = sandbox.run(SandboxJob(work_dir=work, data_dir=data, limits=limits))
        result, failed = read_verdict(work, run, limits)
        if failed is not None:
            raise EvaluationFailed(failed.reason, failed.detail)
        probs = _load_probabilities(work / "out" / "probabilities.npy")
        if len(probs) != m:
            raise EvaluationFailed(FailureReason.invalid_output, f"{len(probs)} members' probabilities, expected {m}")
        return validate_probabilities(probs, len(x), k, "predicted").mean(0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _load_probabilities(path: Path) -> np.ndarray:
    try:
        if os.path.getsize(path) > MAX_PROBABILITIES_BYTES:
            raise EvaluationFailed(FailureReason.output_too_large, "probabilities above 1 GiB")
        return load_npy(path, allow_pickle=False)
    except EvaluationFailed:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise EvaluationFailed(FailureReason.invalid_output, f"unreadable probabilities: {exc}") from exc
