"""Trusted launcher of the process backend: isolate itself, then exec the worker. Stdlib only.

    python -I -S sandbox/process_entry.py SPEC_JSON

Runs on the host before any untrusted code. In order, each step reported (never pretended):

1. unshare new mount, PID, network, IPC and UTS namespaces (plus a user namespace when not root);
2. fork: the child is PID 1 of the new PID namespace, so when it exits (or the launcher dies,
   via PDEATHSIG) the kernel kills every process the program started, detached ones included;
3. in the child: a tmpfs root holding only `sandbox.layout`'s read-only bind mounts, a private
   size-capped /tmp and a size-capped tmpfs for the job's out/, its own /proc; chroot into it;
4. drop to uid/gid 65534 (when root), no-new-privileges, rlimits (address space, CPU seconds,
   processes, file size, no core dumps, open files);
5. write the isolation report to the host's pipe, close it, exec the worker;
6. meanwhile the launcher (outside the chroot, in the same mount namespace) supervises its child
   (sandbox/supervisor.py): it kills it the moment /tmp or out/ is full, and afterwards copies
   out/'s regular files into the host's work dir and appends its own report line to the pipe.

Whatever a step cannot do on this kernel is recorded in the report with the errno, and the
host (`sandbox.process_backend`) puts it in the run's notes.
"""
import ctypes
import errno
import json
import os
import resource
import runpy
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SETUP_FAILED = 121  # exit code: the sandbox itself could not be built
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype=None, flags=0, data=None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def bind(source: str, target: str, read_only: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_root(spec: dict) -> None:
    """A fresh tmpfs root with only the allowed paths; chroot into it."""
    root = spec["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
        if os.path.exists("/" + target):
            os.symlink(target, os.path.join(root, link))
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    if os.path.exists("/etc/ld.so.cache"):
        bind("/etc/ld.so.cache", os.path.join(root, "etc/ld.so.cache"), True)
    # /tmp first: a runtime that lives under /tmp (a venv in a CI checkout there) is bound on top of
    # the private tmpfs instead of being hidden by it
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp, exist_ok=True)
    mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['tmpfs_mb']}m,nr_inodes={spec['inodes']},mode=1777")
    for source, target, read_only in spec["mounts"]:
        bind(source, root + target, read_only)
    if spec.get("out"):  # the only other writable place: capped in bytes and inodes, copied out by the launcher
        mount("tmpfs", root + spec["out"], "tmpfs", MS_NOSUID | MS_NODEV,
              f"size={spec['out_mb']}m,nr_inodes={spec['inodes']},mode=0700,uid={spec['worker_uid']},"
              f"gid={spec['worker_gid']}")
    os.makedirs(os.path.join(root, "dev"))
    for dev in ("null", "zero", "urandom", "random"):
        bind("/dev/" + dev, os.path.join(root, "dev", dev), False)
    os.makedirs(os.path.join(root, "proc"))
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir("/tmp")


def set_limits(spec: dict, report: dict) -> None:
    limits = {"RLIMIT_AS": spec["memory_mb"] << 20, "RLIMIT_CPU": spec["cpu_seconds"],
              "RLIMIT_NPROC": spec["nproc"], "RLIMIT_FSIZE": spec["max_file_mb"] << 20,
              "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 1024}
    for name, value in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            report["rlimits"][name] = value
        except (ValueError, OSError) as exc:
            report["problems"].append(f"{name}: {exc}")


def isolate_child(spec: dict, report: dict, namespaces: bool) -> None:
    if namespaces:
        try:
            build_root(spec)
            report["filesystem"] = True
        except OSError as exc:
            raise SystemExit(f"filesystem isolation failed: {exc}")
    else:
        os.chdir(spec["fallback_cwd"])
    if os.geteuid() == 0 and not report.get("user_namespace"):
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
        report["uid"] = spec["uid"]
    else:
        report["uid"] = os.getuid()
    set_limits(spec, report)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it


def enter_namespaces(report: dict) -> bool:
    base = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.getuid(), os.getgid()
    attempts = [base] if uid == 0 else [base | CLONE_NEWUSER]
    for flags in attempts:
        if libc.unshare(ctypes.c_int(flags)) == 0:
            if flags & CLONE_NEWUSER:  # map ourselves to ourselves: mounts allowed, no real privilege
                for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                                   ("/proc/self/gid_map", f"{gid} {gid} 1")):
                    with open(path, "w") as f:
                        f.write(text)
                report["user_namespace"] = True
            report["namespaces"] = ["mnt", "pid", "net", "ipc", "uts"]
            return True
        err = ctypes.get_errno()
        report["problems"].append(f"unshare(0x{flags:x}) failed: {errno.errorcode.get(err, err)} "
                                  f"({os.strerror(err)})")
    report["namespaces"] = []
    return False


def supervise(spec: dict, pid: int, report_fd: int) -> None:
    """The launcher's part: quotas while the child runs, out/ afterwards, one more report line."""
    sup = runpy.run_path(SUPERVISOR)
    root = spec["root"]
    mounts = {root + "/tmp": "/tmp"}
    if spec.get("out"):
        mounts[root + spec["out"]] = "out/"
    status, exceeded = sup["watch"](pid, mounts, lambda: os.kill(pid, signal.SIGKILL))
    code = sup["exit_code"](status)
    report = {"quota_exceeded": exceeded}
    if spec.get("out") and exceeded is None and code != SETUP_FAILED:
        report["out"] = sup["copy_out"](root + spec["out"], spec["host_out"], max_bytes=spec["out_mb"] << 20)
    os.write(report_fd, ("\n" + json.dumps(report)).encode())
    os.close(report_fd)
    os._exit(code)


def main() -> None:
    spec = json.loads(sys.argv[1])
    report = {"namespaces": [], "filesystem": False, "rlimits": {}, "problems": [], "user_namespace": False}
    report_fd = spec["report_fd"]
    # die with the host (a warm worker may wait for its job for a long time: never orphan it)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != spec.get("host_pid", os.getppid()):
        os._exit(SETUP_FAILED)  # the host died before the line above
    namespaces = enter_namespaces(report)
    if namespaces:
        pid = os.fork()  # the child is PID 1 of the new namespace
        if pid:
            signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
            supervise(spec, pid, report_fd)
    try:
        isolate_child(spec, report, namespaces)
    except (SystemExit, OSError) as exc:
        report["problems"].append(str(exc))
        report["setup_failed"] = True
        os.write(report_fd, json.dumps(report).encode())
        os._exit(SETUP_FAILED)
    os.write(report_fd, json.dumps(report).encode())
    os.close(report_fd)
    argv, env = (spec["argv"], spec["env"]) if namespaces else (spec["fallback_argv"], spec["fallback_env"])
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
