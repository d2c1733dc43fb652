"""The Python runtime a hardened sandbox sees: an allow-listed tree, measured, without any dataset.

Mounting the whole venv, the Python prefix and /usr showed a candidate every data file a package
or Debian ships (sklearn's digits, /usr/share/datasets/fashion-mnist, mnist1d, the tabular wheels)
and so the validation and test labels. A deny-list of today's files would miss tomorrow's package,
so the sandbox sees an allow-list instead, determined by measurement:

- `trace` runs real worker jobs (sandbox/runtime_trace.py: every bundled program built, trained and
  predicted) in the target interpreter under an audit hook and records what it imported, opened
  and mapped;
- the view holds the standard library's code (.py, .pyc, .so; not its site-packages), the code
  files of every third-party top-level package the jobs imported (the whole package, so a
  candidate may use any torch submodule, but none of its data files), every file the jobs opened
  or mapped (shared libraries, locale data, entry points, the .pth files) and the symlinks through
  which the interpreter and the loader reach them, plus the venv's pyvenv.cfg;
- nothing else. A package the worker never imports (a dataset wheel, installed before or after)
  is not in the view; a candidate that imports one gets a typed `import_error`.

The tree is built once per runtime under CACHE/runtime/<key>/ (hard links, or copies where the
filesystem refuses a link) and mounted read-only at the original paths. The key covers the
interpreter, the listing of each site-packages directory (an install or upgrade changes it), and
the worker's own code (what it imports may change). Old trees are not removed automatically:
`rm -rf CACHE/runtime` is always safe between runs.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from evaluator.failures import SandboxUnavailable
from sandbox.base import SOURCE_ROOT

VIEW_VERSION = 2  # bump when the allow-list rules change
TRACE_SCRIPT = Path(__file__).with_name("runtime_trace.py")
CODE = re.compile(r"\.(py|pyc)$|\.so(\.\d+)*$")   # what of an allowed package or the stdlib is shown (+ ELF executables)
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
LIB_DIRS = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"]  # where the loader finds sonames
NEVER = ("/proc", "/sys", "/dev", "/etc", "/run", "/var", "/tmp")  # opened there: not part of a runtime


@dataclass(frozen=True)
class RuntimeView:
    root: Path                        # the tree; host path P is at root / P.relative_to("/")
    roots: tuple[str, ...]            # host paths to mount read-only: root/<r> at <r>
    python: str                       # the interpreter, as the worker runs it
    files: int                        # regular files in the view


def default_runtime_cache() -> Path:
    from evaluator.task_data import default_cache
    return default_cache() / "runtime"


def runtime_view(python: str = sys.executable, cache: str | None = None) -> RuntimeView:
    """The view for `python`: built on first use, then read from the cache (checked at every call,
    so a removed cache is rebuilt rather than mounted as a missing path)."""
    tree = _tree_for(python, str(Path(cache) if cache else default_runtime_cache()))
    if not (tree / "view.json").exists():
        build_view(python, tree)
    meta = json.loads((tree / "view.json").read_text())
    return RuntimeView(root=tree / "root", roots=tuple(meta["roots"]), python=python, files=meta["files"])


@functools.lru_cache(maxsize=8)
def _tree_for(python: str, cache_dir: str) -> Path:
    """Where `python`'s view lives (its key costs an interpreter start: once per process)."""
    return Path(cache_dir) / _key(describe(python))


_DESCRIBE = ("import json, os, site, sys, sysconfig; print(json.dumps({'executable': sys.executable, "
             "'real': os.path.realpath(sys.executable), 'prefix': sys.prefix, 'base_prefix': sys.base_prefix, "
             "'version': sys.version, 'stdlib': sysconfig.get_paths()['stdlib'], "
             "'path': [os.path.abspath(p) for p in sys.path if p]}))")


def describe(python: str) -> dict:
    """Where `python` keeps its runtime (a quick subprocess: it may be another interpreter)."""
    try:
        out = subprocess.run([python, "-c", _DESCRIBE], capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/")
        return json.loads(out.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"cannot run the sandbox's Python {python}: {exc}") from exc


def _key(desc: dict) -> str:
    """Changes when the interpreter, a site-packages listing or the worker's code changes."""
    listing = {}
    for entry in desc["path"]:
        if os.path.isdir(entry) and _runtime_dir(entry, desc["prefix"]):
            with os.scandir(entry) as it:
                listing[entry] = sorted((e.name, _mtime(e.path)) for e in it)
    code = hashlib.sha256()
    for path in sorted((SOURCE_ROOT / "evaluator").rglob("*.py")) + [TRACE_SCRIPT, Path(__file__)]:
        code.update(path.read_bytes())
    real = Path(desc["real"])
    ident = {"v": VIEW_VERSION, "desc": desc, "python_stat": [real.stat().st_size, real.stat().st_mtime_ns],
             "listing": listing, "code": code.hexdigest()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def trace(python: str, scratch: Path) -> dict:
    """Run the measurement (sandbox/runtime_trace.py) in `python`; its report as a dict."""
    from sandbox.layout import worker_env
    env = worker_env(src=str(SOURCE_ROOT))
    env.update(HOME=str(scratch), TMPDIR=str(scratch))
    out = scratch / "trace.json"
    work = scratch / "jobs"
    work.mkdir()
    proc = subprocess.run([python, "-S", str(TRACE_SCRIPT), str(out), str(work)], capture_output=True, text=True,
                          env=env, cwd=str(scratch), timeout=600)
    if proc.returncode != 0 or not out.exists():
        raise SandboxUnavailable(f"measuring the sandbox runtime of {python} failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()[-1500:]}")
    return json.loads(out.read_text())


def allow_list(report: dict) -> set[str]:
    """Host paths (as the interpreter names them; symlinks are followed when the tree is built)."""
    prefix, base, mapped = report["prefix"], report["base_prefix"], set(report["mapped"])
    stdlib = [p for p in report["stdlib"] if os.path.isdir(p)]
    stdlib_real = [os.path.realpath(p) for p in stdlib]
    # a site directory inside the checkout is runtime too: another venv's packages reached through a
    # .pth line (CI keeps the venv in the checkout, and a new venv may point into it)
    sites = sorted({p for p in report["sys_path"] + report["site_dirs"] if os.path.isdir(p)
                    and (_runtime_dir(p, prefix) or os.path.basename(p) in ("site-packages", "dist-packages"))
                    and (os.path.basename(p) in ("site-packages", "dist-packages")
                         or not any(_under(os.path.realpath(p), s) for s in stdlib_real))}, key=len, reverse=True)
    files: set[str] = set()
    for lib in stdlib:
        files |= _code_files(lib, skip=STDLIB_SKIP)
    tops = set()  # the third-party import closure, as top-level entries of a site directory
    for path in report["modules"] + report["package_paths"]:
        site = next((s for s in sites if _under(path, s) and path != s), None)
        if site is not None:
            tops.add(os.path.join(site, Path(os.path.relpath(path, site)).parts[0]))
    for top in tops:
        files |= _code_files(top) if os.path.isdir(top) else ({top} if os.path.isfile(top) else set())
    runtime_roots = [prefix, base, *sites, *stdlib]
    for path in report["opened"] + report["mapped"]:
        if not os.path.isfile(path):
            continue
        if any(_under(path, r) for r in runtime_roots):
            files.add(path)
        elif not _runtime_dir(path, prefix) or any(_under(path, n) for n in NEVER):
            continue  # the worker's own source, its job and data, /proc, /etc, scratch
        elif _under(path, "/usr") or (path in mapped and CODE.search(path)):
            files.add(path)  # system libraries, locale data; a shared library elsewhere (/opt/.../lib)
    if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        files.add(os.path.join(prefix, "pyvenv.cfg"))  # read by the interpreter before any audit hook
    files.add(report["executable"])
    files |= _library_aliases({os.path.realpath(p) for p in mapped})
    return files


def _runtime_dir(path: str, prefix: str) -> bool:
    """Not the source checkout (which holds the venv in CI: that part is runtime)."""
    return not _under(path, SOURCE_ROOT) or _under(path, prefix)


def _under(path: str | Path, root: str | Path) -> bool:
    path, root = str(path), str(root).rstrip("/")
    return not root or path == root or path.startswith(root + "/")


def _code_files(top: str, skip: set[str] = frozenset()) -> set[str]:
    """Python sources, bytecode, shared libraries and executables (torch/bin/torch_shm_manager) under `top`."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in skip]
        found.update(p for p in (os.path.join(dirpath, f) for f in filenames) if CODE.search(p) or _executable(p))
    return found


def _executable(path: str) -> bool:
    try:
        if not os.stat(path).st_mode & 0o111:
            return False
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _library_aliases(mapped_real: set[str]) -> set[str]:
    """Symlinks by which the loader reaches a mapped library (libz.so.1 -> libz.so.1.2.13, /lib64/ld-linux...)."""
    dirs = {os.path.dirname(p) for p in mapped_real} | set(LIB_DIRS)
    dirs |= {os.path.join(d, sub) for d in LIB_DIRS if os.path.isdir(d) for sub in os.listdir(d)
             if sub.endswith("-linux-gnu") and os.path.isdir(os.path.join(d, sub))}
    aliases = set()
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.is_symlink() and os.path.realpath(e.path) in mapped_real:
                aliases.add(e.path)
    return aliases


class _Tree:
    """Builds the mirror: files hard-linked (copied across filesystems), symlinks recreated."""

    def __init__(self, root: Path) -> None:
        self.root, self.files, self.copied = root, 0, 0

    def place(self, path: str, depth: int = 0) -> None:
        if depth > 40:
            return  # a symlink loop
        parts = Path(path).parts
        current = "/"
        for i, name in enumerate(parts[1:], start=1):
            nxt = os.path.join(current, name)
            if os.path.islink(nxt):
                target = os.readlink(nxt)
                if current != "/":  # top-level links (/lib -> usr/lib) are the sandbox root's own
                    self._link(nxt, target)
                rest = parts[i + 1:]
                return self.place(os.path.normpath(os.path.join(current, target, *rest)), depth + 1)
            current = nxt
        if os.path.isfile(current):
            self._file(current)

    def _dest(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _link(self, path: str, target: str) -> None:
        dest = self._dest(path)
        if not os.path.lexists(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, dest)

    def _file(self, path: str) -> None:
        dest = self._dest(path)
        if os.path.lexists(dest):
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:  # another filesystem, or protected_hardlinks for a non-owner
            shutil.copy2(path, dest)
            self.copied += 1
        self.files += 1


def build_view(python: str, tree: Path) -> None:
    """Measure `python`'s worker and build its view at `tree` (atomically: concurrent builds race harmlessly)."""
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=tree.parent))
    try:
        scratch = tmp / "scratch"
        scratch.mkdir()
        report = trace(python, scratch)
        files = allow_list(report)
        mirror = _Tree(tmp / "root")
        for path in sorted(files):
            mirror.place(path)
        roots = _mount_roots(report, mirror.root)
        for d in [mirror.root, *mirror.root.rglob("*")]:
            if d.is_dir() and not d.is_symlink():
                d.chmod(0o755)
        shutil.rmtree(scratch)
        (tmp / "trace.json").write_text(json.dumps(report, indent=1))  # what was measured, for the curious
        (tmp / "view.json").write_text(json.dumps({"python": python, "roots": roots, "files": mirror.files,
                                                   "copied": mirror.copied}, indent=1))
        tmp.chmod(0o755)
        try:
            os.rename(tmp, tree)
        except OSError:  # built by someone else meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _mount_roots(report: dict, mirror: Path) -> list[str]:
    """The fewest host directories whose mirrors cover the tree: /usr, the Python prefixes, any other
    directory a file came from (deepest paths, so a venv under /tmp lands on top of the private /tmp)."""
    candidates = {"/usr", report["prefix"], report["base_prefix"]}
    tops = []
    for dirpath, dirnames, filenames in os.walk(mirror):
        rel = "/" + os.path.relpath(dirpath, mirror) if dirpath != str(mirror) else "/"
        if any(_under(rel, c) for c in candidates):
            dirnames[:] = []
            continue
        if filenames or any(os.path.islink(os.path.join(dirpath, d)) for d in dirnames):
            tops.append(rel)  # files directly here: mount this directory
            dirnames[:] = []
    roots = sorted({c for c in candidates if (mirror / c.lstrip("/")).exists()} | set(tops))
    return [r for r in roots if not any(r != o and _under(r, o) for o in roots)]
