"""The trusted side's handling of what a candidate left in out/ and printed: copy_out and the tar
path (sandbox.supervisor / sandbox.output) never follow a link or extract a path, stop at their caps,
and the supervisor's report line is found wherever the stream splits it."""
from __future__ import annotations

import io
import os
import tarfile

import pytest

from sandbox.output import OutputTail, extract_out_tar
from sandbox.supervisor import REPORT_NAME, copy_out


@pytest.fixture
def messy_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text('{"status": "ok"}')
    (out / "predictions.npz").write_bytes(b"x" * 1000)
    (out / "labels-link").symlink_to("/etc/passwd")
    (out / "subdir").mkdir()
    os.mkfifo(out / "pipe")  # opened non-blocking: must not hang the trusted side
    return out


def test_copy_out_copies_regular_files_only(messy_out, tmp_path):
    dest = tmp_path / "host"
    dest.mkdir()
    report = copy_out(str(messy_out), str(dest), max_bytes=1 << 20)
    assert sorted(os.listdir(dest)) == ["predictions.npz", "result.json"]
    assert sorted(report["odd"]) == ["labels-link", "pipe", "subdir"]
    assert report["files"] == 2 and report["bytes"] == 1016


def test_copy_out_stops_at_its_caps(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    for i in range(70):
        (src / f"f{i:02d}").write_bytes(b"y" * 100)
    report = copy_out(str(src), str(dest), max_bytes=1000)
    assert report["too_many"] and report["too_big"]
    assert sum(p.stat().st_size for p in dest.iterdir()) <= 1000


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_extract_out_tar_never_writes_outside_or_through_links(tmp_path):
    link = tarfile.TarInfo("evil-link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("evil-hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/shadow"
    members = [(tarfile.TarInfo("result.json"), b"{}"), (tarfile.TarInfo("../escape.txt"), b"no"),
               (tarfile.TarInfo("/abs.txt"), b"no"), (tarfile.TarInfo("sub/inner.txt"), b"no"), (link, None),
               (hard, None), (tarfile.TarInfo("big.bin"), b"z" * 5000),
               (tarfile.TarInfo(REPORT_NAME), b'{"odd": ["fifo"], "too_many": false}')]
    data = _tar(members)
    dest = tmp_path / "dest"
    dest.mkdir()
    chunks = [data[i:i + 777] for i in range(0, len(data), 777)]  # a stream, in odd-sized pieces
    report = extract_out_tar(iter(chunks), dest, max_bytes=4096)
    assert os.listdir(dest) == ["result.json"]
    assert not (tmp_path / "escape.txt").exists()
    assert {"../escape.txt", "/abs.txt", "sub/inner.txt", "evil-link", "evil-hard", "fifo"} <= set(report["odd"])
    assert report["too_big"]


def test_extract_out_tar_reports_a_broken_stream(tmp_path):
    report = extract_out_tar(iter([b"not a tar at all" * 100]), tmp_path, max_bytes=1 << 20)
    assert "error" in report and report["files"] == 0


@pytest.mark.parametrize("split", [1, 5, 17, 64])
def test_marker_found_across_chunk_boundaries(split):
    seen = []
    tail = OutputTail(keep=1 << 10, cap=1 << 20, marker=b"\n@@m@@ ", on_marker=seen.append)
    stream = b"noise " * 300 + b"\n@@m@@ {\"exit_code\": 3}\nafter\n@@m@@ second\n"
    for i in range(0, len(stream), split):
        tail.add(stream[i:i + split])
    assert seen == [b'{"exit_code": 3}']  # the first one only


@pytest.mark.parametrize("split", [1, 7, 300, 100000])
def test_bytes_after_the_marker_line_go_to_the_sink_not_the_tail(split):
    """Docker: out/'s tar follows the supervisor's report line on stderr; it is never counted as output."""
    received, lines = [], []

    def on_marker(line):
        lines.append(line)
        return received.append

    tail = OutputTail(keep=1 << 10, cap=1 << 20, marker=b"\n@@m@@ ", on_marker=on_marker)
    payload = bytes(range(256)) * 40
    stream = b"program output\n@@m@@ {\"tar\": true}\n" + payload
    for i in range(0, len(stream), split):
        tail.add(stream[i:i + split])
    tail.close()
    assert lines == [b'{"tar": true}']
    assert b"".join(c for c in received if c) == payload and received[-1] is None
    text, _ = tail.result()
    assert text.startswith("program output") and "\x00" not in text and tail.total < 100
