"""Trusted supervision of a sandboxed worker: write quotas while it runs, its outputs afterwards. Stdlib only.

Everything a candidate can write is a size-capped tmpfs (/tmp, the job's out/, Docker's /dev/shm),
so the host disk never receives more than the caps. Filling one is a typed failure while the
candidate runs: `watch` polls the mounts and kills the worker the moment one is full (no free
block or no free inode), and reports which. Afterwards `copy_out` copies out/'s regular files to
the host (never through a link, at most `max_files`, at most the quota in all).

Two users:
- sandbox/process_entry.py (the process backend): the launcher, outside the chroot but in the
  sandbox's mount namespace, supervises its PID-1 child and copies out/ into the host work dir;
- `python -I -S supervisor.py SPEC_JSON` as PID 1 of a Docker container: starts the worker, watches
  the mounts, kills whatever the worker left running, then prints MARKER, its report line and a tar
  of out/'s regular files on stderr (out/ is a tmpfs that ends with the container) and waits to be
  removed. A candidate can print the marker too; that only ends its own run early, with whatever
  it sent as its outputs (which it could write to out/ anyway).
"""
import errno
import json
import os
import signal
import stat
import sys
import time

MARKER = "\n@@ensnas-supervisor@@ "
REPORT_NAME = ".ensnas-out-report.json"  # the last member of `dump`'s tar (a file of that name in out/ is "odd")
POLL_S = 0.02


def full(path: str) -> bool:
    """No free block or no free inode left on the filesystem at `path`."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail == 0 or (st.f_files > 0 and st.f_favail == 0)


def watch(pid: int, mounts: dict[str, str], kill) -> tuple[int, str | None]:
    """Wait for `pid`; kill it (with `kill()`) as soon as a watched mount is full.
    `mounts`: path -> name to report. Returns (wait status, the full mount's name or None)."""
    exceeded = None
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0, exceeded
        if done:
            return status, exceeded
        if exceeded is None:
            exceeded = next((name for path, name in mounts.items() if full(path)), None)
            if exceeded is not None:
                kill()
        time.sleep(POLL_S)


def exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def copy_out(src: str, dst: str, *, max_bytes: int, max_files: int = 64) -> dict:
    """Copy the regular files directly in `src` to `dst` (which must not hold them yet); report
    anything else by name. Never follows a link; stops at max_files entries or max_bytes in all."""
    report = {"files": 0, "bytes": 0, "odd": [], "too_many": False, "too_big": False}
    try:
        names = sorted(os.listdir(src))
    except OSError as exc:
        report["error"] = str(exc)
        return report
    if len(names) > max_files:
        report["too_many"] = True
        names = names[:max_files]
    for name in names:
        try:
            fd = os.open(os.path.join(src, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink: it could point the host at its own files
                report["odd"].append(name)
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                report["odd"].append(name)
                continue
            out = os.open(os.path.join(dst, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                while True:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    if report["bytes"] + len(chunk) > max_bytes:
                        report["too_big"] = True
                        break
                    os.write(out, chunk)
                    report["bytes"] += len(chunk)
            finally:
                os.close(out)
            report["files"] += 1
        except OSError as exc:
            report["error"] = f"{name}: {exc}"
        finally:
            os.close(fd)
    return report


def dump(src: str, fileobj, *, max_bytes: int, max_files: int = 64) -> None:
    """A tar of `src`'s regular files on `fileobj`, then REPORT_NAME with what was left out."""
    import io
    import tarfile
    report = {"files": 0, "bytes": 0, "odd": [], "too_many": False, "too_big": False}
    names = sorted(os.listdir(src))
    if len(names) > max_files:
        report["too_many"], names = True, names[:max_files]
    with tarfile.open(fileobj=fileobj, mode="w|") as tar:
        for name in names:
            if name == REPORT_NAME:
                report["odd"].append(name)
                continue
            try:
                fd = os.open(os.path.join(src, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    report["odd"].append(name)
                continue
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    report["odd"].append(name)
                    continue
                if report["bytes"] + st.st_size > max_bytes:
                    report["too_big"] = True
                    break
                info = tarfile.TarInfo(name)
                info.size, info.mode = st.st_size, 0o644
                tar.addfile(info, f)
                report["files"] += 1
                report["bytes"] += st.st_size
        data = json.dumps(report).encode()
        info = tarfile.TarInfo(REPORT_NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def keep(spec: dict) -> None:
    """PID 1 of a container: run the worker, watch the quotas, kill the rest, report, wait to be removed."""
    libc_prctl(4, 0)  # PR_SET_DUMPABLE 0: the candidate (same uid) cannot ptrace or read this process
    pid = os.fork()
    if pid == 0:
        os.execv(spec["argv"][0], spec["argv"])
    status, exceeded = watch(pid, {p: n for p, n in spec["mounts"].items() if os.path.isdir(p)},
                             lambda: os.kill(-1, signal.SIGKILL))
    try:
        os.kill(-1, signal.SIGKILL)  # whatever the worker left behind (PID 1 itself is spared)
    except ProcessLookupError:
        pass
    while True:  # reap them
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    report = {"exit_code": exit_code(status), "quota_exceeded": exceeded, "tar": exceeded is None}
    sys.stderr.flush()
    err = sys.stderr.buffer
    err.write((MARKER + json.dumps(report) + "\n").encode())
    if report["tar"]:  # out/ follows the report line, read by the host from the container's stderr
        dump(spec["out"], err, max_bytes=spec["out_max_bytes"])
    err.flush()
    time.sleep(spec.get("linger_s", 600))  # the host removes the container


def libc_prctl(option: int, value: int) -> None:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    keep(json.loads(sys.argv[1]))
