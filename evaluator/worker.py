"""The in-sandbox worker: load the program, build, check, proxy-train K instances, dump probabilities.

    python -m evaluator.worker --work WORK_DIR --data DATA_DIR [--wait-for-job SECONDS]

WORK_DIR holds job.json and program.py and receives out/result.json and out/predictions.npz.
DATA_DIR holds x_train.npy, y_train.npy, x_val.npy and x_test.npy: training labels only;
validation and test labels never enter the sandbox, so the host computes every score.

A job of kind "predict" (evaluator.predict) instead loads an exported ensemble's members from
WORK_DIR (program.py, weights, their feature views in job.json) and writes each member's
probabilities for DATA_DIR/inputs.npy to out/probabilities.npy: the export's code runs sandboxed.

With --wait-for-job the worker is a warm start: it imports torch and loads the data first, then
waits for the host to write job.json (program.py is written before it, job.json last and
atomically), so a sandbox can be launched while the previous candidate still trains.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import types
from pathlib import Path

import numpy as np

from evaluator.failures import EvaluationFailed, FailureReason

PROGRAM_NAME = "program.py"


def load_program(source: str) -> types.ModuleType:
    """Execute the candidate's source as a module named `program`; typed failure on any error."""
    try:
        code = compile(source, PROGRAM_NAME, "exec")
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise EvaluationFailed(FailureReason.syntax_error, f"{exc.__class__.__name__}: {exc.msg if hasattr(exc, 'msg') else exc}"
                               + (f" (line {line})" if line else "")) from exc
    module = types.ModuleType("program")
    module.__file__ = PROGRAM_NAME
    try:
        exec(code, module.__dict__)
    except ImportError as exc:
        raise EvaluationFailed(FailureReason.import_error, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise EvaluationFailed(FailureReason.build_error, f"module level: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(module, "build_model", None)):
        raise EvaluationFailed(FailureReason.missing_build_model, "the program defines no callable build_model")
    return module


def feature_fraction(module: types.ModuleType) -> float:
    value = getattr(module, "FEATURE_FRACTION", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise EvaluationFailed(FailureReason.bad_hyperparameter, f"FEATURE_FRACTION={value!r} is not in (0, 1]")
    return float(value)


def feature_subset(fraction: float, input_shape: tuple[int, ...], seed: int) -> np.ndarray | None:
    """The member's fixed random feature subset (seed 000 §5), as sorted flat indices; None = all."""
    if fraction >= 1.0:
        return None
    rng = np.random.default_rng(10_000 + seed)
    total = int(np.prod(input_shape))
    return np.sort(rng.choice(total, size=max(1, int(round(fraction * total))), replace=False))


def feature_view(fraction: float, input_shape: tuple[int, ...], seed: int):
    """How a member sees its inputs: selected columns for flat inputs, a fixed zero mask for
    structured ones. Returns (transform, the input shape the model is built for)."""
    keep = feature_subset(fraction, input_shape, seed)
    if keep is None:
        return (lambda x: x), input_shape
    if len(input_shape) == 1:
        return (lambda x: x[:, keep]), (len(keep),)
    mask = np.zeros(int(np.prod(input_shape)), np.float32)
    mask[keep] = 1.0
    mask = mask.reshape(input_shape)
    return (lambda x: x * mask), input_shape


def load_inputs(data: Path) -> dict[str, np.ndarray]:
    return {"x_train": np.load(data / "x_train.npy", mmap_mode="r"), "y_train": np.load(data / "y_train.npy"),
            "x_val": np.load(data / "x_val.npy"), "x_test": np.load(data / "x_test.npy")}


def wait_for_job(work: Path, data: Path, seconds: float, parent: int | None = None) -> dict[str, np.ndarray] | None:
    """Warm up (imports, first optimizer step, data), then wait for job.json; None if the host never sent one."""
    from evaluator.training import warm_up
    warm_up()
    inputs = load_inputs(data)
    deadline = time.monotonic() + seconds
    while not (work / "job.json").exists():
        # abandoned, or the host that launched it directly died (kill -9); inside a PID namespace or a
        # container the worker is PID 1 and goes with its launcher or container instead
        if time.monotonic() > deadline or (parent is not None and os.getppid() != parent):
            return None
        time.sleep(0.005)
    return inputs


def manifest_view(view: dict | None):
    """A member's exported feature view (agent.deploy's manifest, as load.py applies it) as a transform."""
    if view is None:
        return lambda x: x
    keep = np.asarray(view["features"], dtype=np.int64)
    if view["mode"] == "columns":
        return lambda x: x.reshape(len(x), -1)[:, keep]

    def masked(x: np.ndarray) -> np.ndarray:
        mask = np.zeros(int(np.prod(x.shape[1:])), x.dtype)
        mask[keep] = 1
        return (x.reshape(len(x), -1) * mask).reshape(x.shape)
    return masked


def run_predict(work: Path, data: Path, job: dict, module: types.ModuleType) -> dict:
    """Each exported member's probabilities for the inputs (the host averages and checks them)."""
    import torch

    from evaluator.training import predict_probabilities
    x = np.load(data / "inputs.npy", allow_pickle=False).astype(np.float32, copy=False)
    probs = []
    for member in job["members"]:
        try:
            model = module.build_model(tuple(member["input_shape"]), int(job["num_classes"]))
            state = torch.load(work / member["weights"], map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise EvaluationFailed(FailureReason.build_error,
                                   f"member {member['weights']}: {type(exc).__name__}: {exc}") from exc
        probs.append(predict_probabilities(model, manifest_view(member.get("view"))(x)))
    out = work / "out"
    out.mkdir(exist_ok=True)
    np.save(out / "probabilities.npy", np.stack(probs))
    return {"status": "ok", "members": len(probs)}


def run_job(work: Path, data: Path, inputs: dict[str, np.ndarray] | None = None) -> dict:
    import torch

    from evaluator.latency import measure_latency
    from evaluator.training import Budget, check_model, predict_probabilities, train_instance

    job = json.loads((work / "job.json").read_text())
    torch.set_num_threads(int(job.get("threads", 1)))
    module = load_program((work / PROGRAM_NAME).read_text())
    if job.get("kind") == "predict":
        return run_predict(work, data, job, module)
    fraction = feature_fraction(module)
    inputs = inputs or load_inputs(data)
    x_train, y_train, x_val, x_test = (inputs[k] for k in ("x_train", "y_train", "x_val", "x_test"))
    input_shape, num_classes = tuple(job["input_shape"]), int(job["num_classes"])
    budget = Budget(**job["budget"])
    n = budget.train_subset or len(y_train)
    x_train = np.asarray(x_train[:n], dtype=np.float32)
    y_train = y_train[:n]
    val, test, seconds, params = [], [], [], 0
    if job.get("build_only"):  # the cheap check of a repair loop: build, shape and size, no training
        view, seen_shape = feature_view(fraction, input_shape, 0)
        try:
            model = module.build_model(seen_shape, num_classes)
        except Exception as exc:
            raise EvaluationFailed(FailureReason.build_error, f"build_model raised {type(exc).__name__}: {exc}") from exc
        params = check_model(model, view(x_train[:2]), num_classes, int(job["max_params"]))
        return {"status": "ok", "param_count": params, "build_only": True, "feature_fraction": fraction}
    for seed in job["seeds"]:
        torch.manual_seed(seed)
        view, seen_shape = feature_view(fraction, input_shape, seed)
        try:
            model = module.build_model(seen_shape, num_classes)
        except Exception as exc:
            raise EvaluationFailed(FailureReason.build_error, f"build_model raised {type(exc).__name__}: {exc}") from exc
        params = check_model(model, view(x_train[:2]), num_classes, int(job["max_params"]))
        seconds.append(train_instance(model, view(x_train), y_train, budget, seed))
        if job.get("save_weights"):
            (work / "out").mkdir(exist_ok=True)
            torch.save(model.state_dict(), work / "out" / f"weights_{seed}.pt")
        val.append(predict_probabilities(model, view(x_val)))
        test.append(predict_probabilities(model, view(x_test)))
    latency = measure_latency(model, view(x_val)) if job.get("latency", True) else None  # the last instance
    out = work / "out"
    out.mkdir(exist_ok=True)
    np.savez(out / "predictions.npz", val=np.stack(val), test=np.stack(test))
    return {"status": "ok", "param_count": params, "train_seconds": seconds, "feature_fraction": fraction,
            "latency_ms": latency}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaluator.worker")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--wait-for-job", type=float, default=0.0, metavar="SECONDS",
                        help="warm start: import and load first, then wait this long for job.json")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="with --wait-for-job: give up when the parent is no longer this process")
    args = parser.parse_args(argv)
    inputs = None
    if args.wait_for_job > 0:
        inputs = wait_for_job(args.work, args.data, args.wait_for_job, args.parent_pid)
        if inputs is None:
            os._exit(0)  # abandoned by the host: leave no verdict
    start = time.perf_counter()
    try:
        result = run_job(args.work, args.data, inputs)
    except EvaluationFailed as exc:
        result = {"status": "failed", "reason": exc.reason.value, "detail": exc.detail}
    except MemoryError:
        result = {"status": "failed", "reason": FailureReason.out_of_memory.value, "detail": "MemoryError"}
    except BaseException as exc:  # anything else the program provoked, SystemExit included
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = {"status": "failed", "reason": FailureReason.crashed.value, "detail": tb[:2000]}
    result["worker_seconds"] = time.perf_counter() - start
    out = args.work / "out"
    out.mkdir(exist_ok=True)
    (out / "result.json").write_text(json.dumps(result))
    sys.stdout.flush()
    # Exit without running the program's atexit hooks or lingering non-daemon threads.
    os._exit(0)


if __name__ == "__main__":
    main()
