"""Measure what a sandbox worker needs from its Python runtime. Trusted; run by sandbox.runtime_view.

    python -S sandbox/runtime_trace.py OUT_JSON SCRATCH_DIR      (PYTHONPATH = the source root)

Installs an audit hook, then runs `site` (hence -S: .pth processing is measured too), then real
worker jobs on tiny data: every bundled program built, trained and predicted, a build-only check,
feature bagging, and the modules candidate programs commonly import. Writes what the interpreter
imported (module files and package paths), opened and mapped (shared libraries, locale data),
plus the interpreter's own paths.
"""
import json
import os
import sys

# run as a script: its own directory (sandbox/, whose select.py shadows the stdlib's) is not the worker's
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]
OPENED: set[str] = set()


def _hook(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        OPENED.add(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(_hook)
import site  # noqa: E402

site.main()

# what candidate programs import besides torch.nn (the program contract is torch + numpy + stdlib)
COMMON_IMPORTS = ["math", "numpy", "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.optim"]


def _jobs(programs: dict[str, str]) -> list[tuple[str, str, list[int], int, dict]]:
    """(name, source, input shape, classes, job flags) covering what the worker does."""
    image, flat = [1, 8, 8], [12]
    jobs = []
    for name, source in sorted(programs.items()):
        shape, classes = (flat, 2) if "tabular" in name else (image, 10)
        jobs.append((name, source, shape, classes, {}))
    mlp = programs.get("mlp.py", "")
    jobs.append(("bagged", "FEATURE_FRACTION = 0.5\n" + mlp, flat, 2, {"save_weights": True}))
    jobs.append(("check", mlp, image, 10, {"build_only": True}))
    return jobs


def _run(scratch: str) -> None:
    import importlib
    from pathlib import Path

    import numpy as np

    from evaluator import worker
    from evaluator.training import warm_up

    warm_up()
    for name in COMMON_IMPORTS:
        importlib.import_module(name)
    programs = {p.name: p.read_text() for p in Path(worker.__file__).with_name("programs").glob("*.py")}
    rng = np.random.default_rng(0)
    for i, (name, source, shape, classes, flags) in enumerate(_jobs(programs)):
        work, data = Path(scratch, f"work{i}"), Path(scratch, f"data{i}")
        (work / "out").mkdir(parents=True)
        data.mkdir()
        for split, n in (("x_train", 16), ("x_val", 8), ("x_test", 8)):
            np.save(data / f"{split}.npy", rng.normal(size=[n] + shape).astype(np.float32))
        np.save(data / "y_train.npy", (np.arange(16) % classes).astype(np.int64))
        (work / worker.PROGRAM_NAME).write_text(source)
        job = {"input_shape": shape, "num_classes": classes, "seeds": [0, 1], "max_params": 10**7, "threads": 1,
               "budget": {"epochs": 1, "batch_size": 8, "lr": 1e-3}, **flags}
        (work / "job.json").write_text(json.dumps(job))
        result = worker.run_job(work, data)
        if result.get("status") != "ok":
            raise SystemExit(f"runtime trace: the bundled job {name} failed: {result}")
        if name == "bagged":  # the predict kind (evaluator.predict): an exported member, torch.load(weights_only)
            (work / "member_0.pt").write_bytes((work / "out" / "weights_0.pt").read_bytes())
            keep = worker.feature_subset(0.5, tuple(shape), 0).tolist()
            predict = {"kind": "predict", "num_classes": classes, "threads": 1, "members": [
                {"weights": "member_0.pt", "input_shape": [len(keep)], "view": {"mode": "columns", "features": keep}}]}
            (work / "job.json").write_text(json.dumps(predict))
            np.save(data / "inputs.npy", rng.normal(size=[4] + shape).astype(np.float32))
            if worker.run_job(work, data).get("status") != "ok":
                raise SystemExit("runtime trace: the predict job failed")


def _touch_gpu() -> None:
    """With a GPU, the driver and CUDA libraries load at the first CUDA call: make one."""
    import torch
    if torch.cuda.is_available():
        torch.ones(4, device="cuda").sum().item()


def _mapped() -> list[str]:
    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                paths.add(parts[5].strip().removesuffix(" (deleted)"))
    return sorted(paths)


def main() -> None:
    out, scratch = sys.argv[1], sys.argv[2]
    _run(scratch)
    _touch_gpu()
    import sysconfig
    modules, package_paths = set(), set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            modules.add(os.path.abspath(file))
        try:  # namespace packages have no __file__, only __path__
            package_paths.update(os.path.abspath(p) for p in list(module.__path__) if isinstance(p, str))
        except Exception:  # noqa: BLE001 - no __path__, or torch's lazy objects that only look like modules
            pass
    paths = sysconfig.get_paths()
    report = {"executable": sys.executable, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
              "version": sys.version, "stdlib": [paths["stdlib"], paths["platstdlib"]],
              "site_dirs": site.getsitepackages(), "sys_path": [os.path.abspath(p) for p in sys.path if p],
              "modules": sorted(modules), "package_paths": sorted(package_paths), "opened": sorted(OPENED),
              "mapped": _mapped()}
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
