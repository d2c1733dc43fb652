"""Sandbox overhead: the same proxy evaluation bare (in-process), in subprocess, process and Docker.

    .venv/bin/python benchmarks/sandbox_overhead.py [--repeats 3] [--tasks digits,fashion-mnist]

Scale: two bundled tasks with their seed programs and proxy budgets, 2 instances, one torch
thread: digits (mlp.py, 15 epochs on 1347 8x8 images: a sub-second evaluation, the worst case
for relative overhead) and fashion-mnist (cnn_small.py, 1 epoch on a 12000-image subset). Each backend runs the
identical Evaluator path (prepare work dir -> sandbox -> host-side scoring); "bare" runs the
worker's `run_job` in this process, so its time is pure training + prediction + scoring.
Overhead = backend wall - bare wall, per candidate, as seconds and as a fraction of the bare
evaluation time. Repeats are interleaved across backends so machine load hits all alike; the
median is reported. "vs subprocess" isolates the cost of the isolation itself from the cost
every out-of-process backend pays (a fresh interpreter importing torch, also reported).
A first, task-free section times each backend's lifecycle around `python -c pass`: the cost of
the isolation mechanics themselves. "+warm" rows use warm starts (sandbox.warm): the sandbox is
launched, imports torch and loads the data before its candidate exists. "idle" times a candidate
whose sandbox had time to warm up (the first of a cycle, or after LLM generation); "burst" the
next one right after it, whose sandbox warmed only during that run (the warm-up CPU is not gone,
only off the critical path, spent on the other core: about the "fresh python+torch" figure).
Writes benchmarks/results/sandbox_overhead.json
(`--tasks ""` re-measures the lifecycle section only and keeps the recorded task runs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.evaluate import Evaluator  # noqa: E402
from evaluator.failures import SandboxUnavailable  # noqa: E402
from evaluator.tasks import get_task  # noqa: E402
from sandbox import Limits, Sandbox, SandboxJob, SandboxRun, make_sandbox  # noqa: E402
from sandbox.base import Launched  # noqa: E402


class BareSandbox(Sandbox):
    """No isolation at all: the worker's job function in this very process (the reference)."""
    name = "bare"

    def start(self, job: SandboxJob) -> Launched:
        return _BareRun(job)


class _BareRun(Launched):
    def __init__(self, job: SandboxJob) -> None:
        self.job = job

    def alive(self) -> bool:
        return False

    def cancel(self) -> None:
        pass

    def finish(self) -> SandboxRun:
        from evaluator.failures import EvaluationFailed
        from evaluator.worker import run_job
        start = time.perf_counter()
        try:
            result = run_job(self.job.work_dir, self.job.data_dir)
        except EvaluationFailed as exc:
            result = {"status": "failed", "reason": exc.reason.value, "detail": exc.detail}
        (self.job.work_dir / "out" / "result.json").write_text(json.dumps(result))
        return SandboxRun(exit_code=0, wall_seconds=time.perf_counter() - start)


def fresh_interpreter_seconds() -> float:
    """What any out-of-process backend pays before isolation: a new Python importing torch and numpy
    (the trainer's own Adam keeps torch._dynamo, another ~1 s, out of it: evaluator.training)."""
    import subprocess
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, torch"], check=True)
    return time.perf_counter() - start


def bench_task(task_name: str, repeats: int, epochs: int | None, train_subset: int | None) -> dict:
    task = get_task(task_name)
    update = {k: v for k, v in {"epochs": epochs, "train_subset": train_subset}.items() if v}
    if update:
        task = task.model_copy(update={"budget": task.budget.model_copy(update=update)})
    source = task.seed_source()
    limits = Limits(timeout_s=600, memory_mb=8192)
    backends: dict[str, Sandbox] = {"bare": BareSandbox()}
    skipped = {}
    for name in ("subprocess", "process", "docker"):
        sandbox = make_sandbox(name)
        try:
            sandbox.check_available()
            backends[name] = sandbox
        except SandboxUnavailable as exc:
            skipped[name] = str(exc)
    evaluators = {name: Evaluator(task=task, sandbox=sb, limits=limits, threads=1) for name, sb in backends.items()}
    warm = {f"{name}+warm": Evaluator(task=task, sandbox=sb, limits=limits, threads=1, warm_start=1)
            for name, sb in backends.items() if name != "bare"}
    for name, ev in {**evaluators, **warm}.items():  # warm-up: data cache, Docker image, page cache
        result = ev.evaluate(source)
        assert result.ok, (name, result.reason, result.detail)
    walls: dict[str, list[float]] = {n: [] for n in evaluators}
    walls.update({f"{n} {when}": [] for n in warm for when in ("idle", "burst")})
    interpreter: list[float] = []
    accuracy: dict[str, float] = {}
    loads: list[list[float]] = []  # the 1/5/15-minute load average at each repeat: the machine is shared

    def timed(label: str, ev: Evaluator) -> None:
        start = time.perf_counter()
        result = ev.evaluate(source)
        walls[label].append(time.perf_counter() - start)
        assert result.ok, (label, result.reason, result.detail)
        accuracy[label] = result.statistics.accuracy

    for _ in range(repeats):
        loads.append(list(os.getloadavg()))
        interpreter.append(fresh_interpreter_seconds())
        for name, ev in evaluators.items():
            timed(name, ev)
        for name, ev in warm.items():
            # idle: its sandbox had time to warm up (while the others ran); burst: right after, so its
            # sandbox was launched when the idle one was taken and warmed during that run (the loop's
            # steady state: a cycle's candidates evaluated back to back)
            timed(f"{name} idle", ev)
            timed(f"{name} burst", ev)
    for ev in {**evaluators, **warm}.values():
        ev.close()
    bare = statistics.median(walls["bare"])
    rows = []
    for name, w in walls.items():
        med = statistics.median(w)
        rows.append({"backend": name, "median_s": med, "runs_s": w, "overhead_s": med - bare,
                     "overhead_ratio": (med - bare) / bare,
                     # vs the same variant (cold / warm idle / warm burst) of the subprocess backend
                     "isolation_overhead_s": _vs_subprocess(name, med, walls),
                     "accuracy": accuracy[name]})
    b = task.budget
    print(f"\ntask={task.name} epochs={b.epochs} train_subset={b.train_subset} seed={task.seed_program} instances=2 "
          f"repeats={repeats} threads=1; bare evaluation {bare:.2f} s; fresh python+torch "
          f"{statistics.median(interpreter):.2f} s; 1-min load average {min(l[0] for l in loads):.1f}-"
          f"{max(l[0] for l in loads):.1f} on {os.cpu_count()} cores")
    print(f"{'backend':<22} {'median s':>9} {'overhead s':>11} {'overhead %':>11} {'vs subprocess s':>16} {'accuracy':>9}")
    for r in rows:
        iso = f"{r['isolation_overhead_s']:+.2f}" if r["isolation_overhead_s"] is not None else "-"
        print(f"{r['backend']:<22} {r['median_s']:>9.2f} {r['overhead_s']:>11.2f} {100 * r['overhead_ratio']:>10.1f}% "
              f"{iso:>16} {r['accuracy']:>9.3f}")
    for name, why in skipped.items():
        print(f"{name:<11} skipped: {why}")
    return {"task": task.name, "epochs": b.epochs, "train_subset": b.train_subset, "seed_program": task.seed_program,
            "instances": 2, "repeats": repeats, "fresh_interpreter_s": interpreter, "load_average_per_repeat": loads,
            "rows": rows, "skipped": skipped}


def _vs_subprocess(name: str, median: float, walls: dict[str, list[float]]) -> float | None:
    backend, _, variant = name.partition("+")
    reference = "subprocess" + ("+" + variant if variant else "")
    if backend == "bare" or reference not in walls:
        return None
    return median - statistics.median(walls[reference])


def lifecycle(repeats: int = 7) -> dict:
    """The isolation mechanics alone: each backend starting `python -c pass` (no torch, no job)."""
    import subprocess
    import tempfile
    rows: dict[str, list[float]] = {}

    def plain() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def process() -> None:
        sb = make_sandbox("process")
        with tempfile.TemporaryDirectory() as tmp:
            work, data = Path(tmp, "w"), Path(tmp, "d")
            (work / "out").mkdir(parents=True)
            data.mkdir()
            argv = [sys.executable, "-c", "pass"]
            proc, fd = sb._launch(work, data, argv, argv, Path(tmp, "root"), Path(tmp), 10, 1024, 16, 64)
            proc.wait()
            os.close(fd)

    def docker() -> None:
        from sandbox.docker_image import ensure_base_image
        from sandbox.layout import runtime_mounts
        client = make_sandbox("docker").client()
        ct = client.containers.create(ensure_base_image(client), [sys.executable, "-c", "pass"],
                                      volumes={m.source: {"bind": m.target, "mode": "ro"} for m in runtime_mounts()},
                                      network_mode="none", read_only=True, user="65534:65534", cap_drop=["ALL"])
        ct.start()
        ct.wait()
        ct.reload()
        ct.remove(force=True)

    for name, fn in (("plain python", plain), ("process", process), ("docker", docker)):
        try:
            fn()
        except Exception as exc:  # e.g. no daemon: say so, keep the others
            print(f"{name:<13} skipped: {exc}")
            continue
        rows[name] = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            rows[name].append(time.perf_counter() - start)
    print(f"\nlifecycle: `python -c pass` started by each backend, {repeats} repeats")
    for name, w in rows.items():
        print(f"{name:<13} median {statistics.median(w):.3f} s  (+{statistics.median(w) - statistics.median(rows['plain python']):.3f} s)")
    return {name: {"median_s": statistics.median(w), "runs_s": w} for name, w in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", default="digits,fashion-mnist", help="comma-separated bundled tasks")
    parser.add_argument("--epochs", type=int, default=None, help="override the tasks' proxy epochs")
    parser.add_argument("--train-subset", type=int, default=None, help="override the tasks' training subset")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sandbox_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_at_start = list(os.getloadavg())
    mechanics = lifecycle()
    runs = [bench_task(name, args.repeats, args.epochs, args.train_subset) for name in args.tasks.split(",") if name]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not runs and Path(args.out).exists():  # lifecycle only: keep the task runs already recorded
        previous = json.loads(Path(args.out).read_text())
        previous["lifecycle"] = mechanics
        Path(args.out).write_text(json.dumps(previous, indent=2))
        print(f"updated the lifecycle section of {args.out}")
        return
    Path(args.out).write_text(json.dumps({
        "threads": 1, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(), "lifecycle": mechanics,
        "runs": runs,
        "targets": {"overhead_ratio_below": 0.05, "overhead_s_below": 1.0}}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
