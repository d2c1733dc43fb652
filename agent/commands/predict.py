"""`ensnas predict EXPORT_DIR --inputs X.npy --out P.npy`: an exported ensemble's probabilities,
computed in a sandbox (the export's program.py is candidate code; `load.py` would run it here)."""
from __future__ import annotations

from pathlib import Path


from evaluator.failures import ConfigError
from evaluator.parse_lock import load_npy


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="an exported ensemble's probabilities for X.npy, computed in a sandbox")
    p.add_argument("export_dir", help="an `ensnas export` directory (manifest.json, program.py, member_*.pt)")
    p.add_argument("--inputs", required=True, help=".npy of inputs in the model's input space, shape (n, *input_shape); "
                                                   "with --raw the task's raw inputs (.npy, or a .csv/.parquet table)")
    p.add_argument("--raw", action="store_true",
                   help="apply the preprocessing recorded in the export's manifest first (as load.predict does)")
    p.add_argument("--out", required=True, help="where to write the [n, num_classes] probabilities (.npy)")
    p.add_argument("--sandbox", default="auto", help="auto | docker | process | subprocess (default: auto)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds")
    p.add_argument("--memory-mb", type=int, default=4096)
    p.add_argument("--threads", type=int, default=1, help="torch threads inside the sandbox")
    p.set_defaults(handler=run)


def run(args) -> int:
    import numpy as np   # here, not at the top: `ensnas --help` imports no numpy
    from evaluator.predict import predict_export
    from sandbox import Limits, make_sandbox
    from sandbox.select import resolve_sandbox_name
    inputs = read_inputs(Path(args.inputs), table_ok=args.raw)
    name = resolve_sandbox_name(args.sandbox)
    sandbox = make_sandbox(name)
    sandbox.check_available()
    limits = Limits(timeout_s=args.timeout, memory_mb=args.memory_mb, cpus=float(args.threads))
    probs = predict_export(Path(args.export_dir), inputs, sandbox=sandbox, limits=limits, raw=args.raw,
                           threads=args.threads)
    out = Path(args.out)
    try:
        np.save(out, probs.astype(np.float32))
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc}") from exc
    print(f"predicted {len(probs)} inputs x {probs.shape[1]} classes in the {name} sandbox -> {out}")
    return 0


def read_inputs(path: Path, *, table_ok: bool):
    """A .npy array (never unpickled), or with table_ok a .csv/.tsv/.parquet table as a DataFrame."""
    import numpy as np
    try:
        if path.suffix in (".csv", ".tsv", ".parquet") and table_ok:
            import pandas as pd
            return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(
                path, sep="\t" if path.suffix == ".tsv" else ",")
        return load_npy(path, allow_pickle=False)
    except (OSError, ValueError, ImportError) as exc:
        kinds = ".npy array or a .csv/.tsv/.parquet table" if table_ok else ".npy array (tables need --raw)"
        raise ConfigError(f"cannot read inputs {path} as a {kinds}: {exc}") from exc
