"""Worst-case time to apply one SEARCH/REPLACE block (agent/delta.py), before and after the
bounded matcher (agent/delta_match.py).

Parents: the bundled seed programs, a DARTS-rendered program, and a 400-line program at the
pre-filter's size cap. SEARCH shapes, each at most 20,000 characters (the answer cap):

- garbage_20k: 250 random code-like lines; garbage_20k_100_lines: the same in 100 long lines
  (fewer lines than the larger parents, the review's 19 KB garbage SEARCH);
- near_copy_80: 80 consecutive parent lines with one name changed (must be refused);
- near_copy_20k: the parent repeated to 20,000 characters with one name changed;
- near_copy_all: the whole parent with one name changed (every window is a candidate);
- reindented_80 / respaced_80: 80 parent lines at another indentation / with other spacing
  inside the lines (must apply: the whitespace and token levels);
- repeated_line_20k: one common parent line repeated to 20,000 characters.

"after" is this checkout's apply_output, repeated --repeats times (max and median);
"before" is agent/delta.py at --before (a git commit), once per case in a subprocess with a
--before-timeout. Before and after alternate, in one run; the load average is recorded.

    python benchmarks/delta_apply.py [--repeats 5] [--before eecabe9] [--before-timeout 300]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from agent.delta import apply_output  # noqa: E402
from benchmarks._common import print_table, write_result  # noqa: E402

CAP = 20_000


def block(search: str, replace: str = "PROBE = 1") -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def parents() -> dict[str, str]:
    import numpy as np
    from agent.proposers.darts.genotype import random_genotype, render
    out = {p.name: p.read_text() for p in sorted((ROOT / "evaluator" / "programs").glob("*.py"))}
    darts = render(random_genotype(np.random.default_rng(0)), channels=16, layers=8)
    out["darts_rendered"] = darts
    pad, i = [], 0
    while len(darts.split("\n")) + len(pad) < 396:   # distinct helper functions up to the 400-line cap
        pad += [f"def helper_{i}(x, scale={i}):", f"    y = x * scale + {i}", "    return y", ""]
        i += 1
    out["cap_400_lines"] = darts + "\n\n" + "\n".join(pad) + "\n"
    return out


def shapes(parent: str, rng: random.Random) -> dict[str, tuple[str, bool]]:
    """name → (SEARCH text, whether it should apply)."""
    lines = parent.rstrip("\n").split("\n")
    mid = max(0, len(lines) // 2 - 40)
    window = lines[mid:mid + 80]
    named = [i for i, line in enumerate(window) if any(c.isalpha() for c in line.split("#")[0])]
    k = named[len(named) // 2]
    changed = list(window)
    changed[k] = changed[k].replace(changed[k].split()[0], changed[k].split()[0] + "_zz", 1)
    garbage = "\n".join("".join(rng.choice("abcdefgh ()[]=,.:_0123456789") for _ in range(79))
                        for _ in range(CAP // 80))
    whole = "\n".join(lines)
    big = (whole + "\n") * (CAP // (len(whole) + 1) + 1)
    big = big[:CAP - 200].rsplit("\n", 1)[0]
    big = big.replace(lines[k + mid].strip(), lines[k + mid].strip() + "_zz", 1) if lines[k + mid].strip() else big
    common = max(set(lines), key=lambda s: (lines.count(s), len(s)) if s.strip() else (0, 0))
    unique_window = "\n".join(window)
    everything = list(lines)
    j = next(i for i in range(len(lines) // 2, len(lines)) if any(c.isalpha() for c in lines[i]))
    everything[j] = everything[j].replace(everything[j].split()[0], everything[j].split()[0] + "_zz", 1)
    long_garbage = "\n".join("".join(rng.choice("abcdefgh ()[]=,.:_0123456789") for _ in range(199))
                             for _ in range(CAP // 200))
    return {
        "garbage_20k": (garbage[:CAP - 100], False),
        "garbage_20k_100_lines": (long_garbage[:CAP - 100], False),
        "near_copy_80": ("\n".join(changed), False),
        "near_copy_20k": (big, False),
        "near_copy_all": ("\n".join(everything), False),
        "reindented_80": ("\n".join(("  " + s) if s.strip() else s for s in window), True),
        "respaced_80": ("\n".join(s.replace(", ", ",") for s in window), True),
        "repeated_line_20k": ("\n".join([common] * (CAP // (len(common) + 1) - 10)), False),
        "_exact_80": (unique_window, True),
    }


BEFORE_SCRIPT = r"""
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("old_delta", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules["old_delta"] = mod; spec.loader.exec_module(mod)
case = json.loads(open(sys.argv[2]).read())
start = time.perf_counter()
r = mod.apply_output(case["parent"], case["text"])
print(json.dumps({"seconds": time.perf_counter() - start, "ok": r.ok, "failure": r.failure and r.failure.value}))
"""


def time_before(old_delta: Path, parent: str, text: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        case = Path(tmp) / "case.json"
        case.write_text(json.dumps({"parent": parent, "text": text}))
        script = Path(tmp) / "run.py"
        script.write_text(BEFORE_SCRIPT)
        try:
            out = subprocess.run([sys.executable, str(script), str(old_delta), str(case)], capture_output=True,
                                 text=True, timeout=timeout, check=True)
        except subprocess.TimeoutExpired:
            return {"seconds": None, "timed_out": timeout}
        return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--before", default="eecabe9", help="git commit whose agent/delta.py is 'before' ('' to skip)")
    ap.add_argument("--before-timeout", type=float, default=300.0)
    ap.add_argument("--before-shapes", default="garbage_20k,garbage_20k_100_lines,near_copy_80,near_copy_20k,near_copy_all,respaced_80",
                    help="shapes to time on the old code (each may take minutes)")
    args = ap.parse_args()
    load_start = os.getloadavg()
    old_delta = None
    if args.before:
        try:
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.before}:agent/delta.py"],
                                 capture_output=True, text=True, check=True).stdout
            old_delta = Path(tempfile.mkdtemp()) / "old_delta.py"
            old_delta.write_text(src)
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            print(f"no 'before' timings: {exc}")
    rng = random.Random(0)
    rows, records = [], []
    for pname, parent in parents().items():
        for sname, (search, should_apply) in shapes(parent, rng).items():
            # an applying block rewrites its own lines (a comment added), as a real edit would
            first, _, rest = search.partition("\n")
            text = block(search, f"{first}  # edited\n{rest}" if should_apply else "PROBE = 1")
            after, result = [], None
            before = None
            for rep in range(args.repeats):
                start = time.perf_counter()
                result = apply_output(parent, text)
                after.append(time.perf_counter() - start)
                if rep == 0 and old_delta is not None and sname in args.before_shapes.split(","):
                    before = time_before(old_delta, parent, text, args.before_timeout)  # interleaved
            outcome = "applied" if result.ok else result.failure.value
            assert result.ok == should_apply or sname.startswith("_"), (pname, sname, result.detail[:300])
            rec = {"parent": pname, "parent_lines": parent.count("\n"), "parent_chars": len(parent),
                   "search": sname, "search_chars": len(search), "after_max_s": max(after),
                   "after_median_s": statistics.median(after), "after_outcome": outcome,
                   "after_matched": result.fuzzy}
            if before is not None:
                rec["before_s"] = before.get("seconds")
                rec["before_outcome"] = ("timed out" if before.get("timed_out") else
                                         "applied" if before.get("ok") else before.get("failure"))
                if before.get("timed_out"):
                    rec["before_timed_out_after_s"] = before["timed_out"]
            records.append(rec)
            b = rec.get("before_s")
            rows.append([pname, rec["parent_lines"], sname, len(search),
                         "-" if "before_outcome" not in rec else (f"> {args.before_timeout:.0f}" if b is None else
                                                                  f"{b:.3f}"),
                         rec.get("before_outcome", "-"), f"{rec['after_max_s']:.4f}", outcome])
            print(f"  {pname} {sname}: after max {rec['after_max_s']:.4f} s ({outcome})"
                  + (f", before {rec.get('before_s')} ({rec.get('before_outcome')})" if "before_outcome" in rec else ""),
                  flush=True)
    print_table(["parent", "lines", "SEARCH", "chars", "before s", "before", "after max s", "after"], rows)
    worst = max(r["after_max_s"] for r in records)
    worst_before = [r["before_s"] for r in records if "before_outcome" in r]
    summary = {"worst_after_s": worst, "target_s": 0.5, "meets_target": worst < 0.5,
               "worst_before_s": None if not worst_before or None in worst_before else max(worst_before),
               "before_timeouts": sum(1 for r in records if r.get("before_outcome") == "timed out")}
    print(f"worst case after: {worst:.4f} s (target < 0.5 s); before: {summary['worst_before_s']} "
          f"({summary['before_timeouts']} timed out)")
    path = write_result("delta_apply", {
        "command": "python benchmarks/delta_apply.py " + " ".join(sys.argv[1:]), "repeats": args.repeats,
        "before_commit": args.before, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "summary": summary, "cases": records})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
