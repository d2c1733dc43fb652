"""The sandbox's Docker images: an offline base built on this machine, or a user image from a Dockerfile.

No registry is needed for the default. `ensnas-sandbox:base` is imported from a tarball made
here (`docker import`): an almost empty root filesystem — mount points, merged-/usr symlinks,
an /etc with just `nobody`, the loader cache — into which the Docker backend bind-mounts,
read-only, the host's /usr, Python runtime, virtual environment, source tree and the task's
inputs. The image itself holds no code and no data, so it never goes stale.

Machines that can reach a registry can instead build `sandbox/Dockerfile` (python:3.11-slim
plus this package) with `build_user_image` and select it with `DockerConfig(image=...)`.
"""
from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from evaluator.failures import SandboxUnavailable
from sandbox.base import SOURCE_ROOT

BASE_IMAGE = "ensnas-sandbox:base"
BASE_IMAGE_VERSION = "2"  # bump when the tarball's layout changes; stored as a label
DOCKERFILE = Path(__file__).with_name("Dockerfile")
NOBODY = 65534

_ETC_PASSWD = "root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_ETC_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def base_tarball() -> bytes:
    """The root filesystem of the base image, as an uncompressed tar built in memory."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, now
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))

        for d in ("usr", "etc", "dev", "proc", "sys", "ensnas-job", "ensnas-data", "home"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
            add_link(link, target)
        add_file("etc/passwd", _ETC_PASSWD.encode())
        add_file("etc/group", _ETC_GROUP.encode())
        ld_cache = Path("/etc/ld.so.cache")
        if ld_cache.exists():  # lets the loader find /usr/lib/<triplet> libraries without a search
            add_file("etc/ld.so.cache", ld_cache.read_bytes())
    return buf.getvalue()


def ensure_base_image(client) -> str:
    """Import the base image once (offline); returns its tag."""
    import docker.errors

    try:
        image = client.images.get(BASE_IMAGE)
        if (image.labels or {}).get("ensnas.base.version") == BASE_IMAGE_VERSION:
            return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    try:
        client.api.import_image_from_data(
            base_tarball(), repository=BASE_IMAGE.split(":")[0], tag=BASE_IMAGE.split(":")[1],
            changes=[f'LABEL ensnas.base.version="{BASE_IMAGE_VERSION}"', f"USER {NOBODY}:{NOBODY}",
                     "WORKDIR /work"])
    except docker.errors.APIError as exc:
        raise SandboxUnavailable(f"could not import the offline sandbox image {BASE_IMAGE}: {exc}") from exc
    return BASE_IMAGE


def build_user_image(client, *, tag: str = "ensnas-sandbox:user", dockerfile: Path = DOCKERFILE,
                     context: Path = SOURCE_ROOT, build_args: dict[str, str] | None = None) -> str:
    """Build a self-contained image (needs its FROM image locally or a reachable registry)."""
    import docker.errors

    try:
        client.images.build(path=str(context), dockerfile=str(Path(dockerfile).resolve()), tag=tag, rm=True,
                            buildargs=build_args or {}, network_mode="none" if _local_only(dockerfile) else None)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise SandboxUnavailable(f"could not build sandbox image {tag} from {dockerfile}: {exc}") from exc
    return tag


def _local_only(dockerfile: Path) -> bool:
    """A Dockerfile that only builds on the offline base needs no network at build time."""
    text = Path(dockerfile).read_text()
    return "FROM " + BASE_IMAGE in text and "pip install" not in text
