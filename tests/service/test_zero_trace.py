"""Zero trace: a server with no write access anywhere leaves nothing, logs nothing of users.

The server runs in its own mount namespace where every storage mount is read-only
(`unshare --mount` + `mount -o remount,bind,ro`), so any attempt to spool an upload or a
result to disk would fail loudly; its stderr (the log) is captured and scanned for the
markers carried by filenames, contents, parameters and headers.
"""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from tests.pdfs import make_encrypted_pdf, make_pdf

MARKER = "ZTMARK" + uuid.uuid4().hex[:12]
# Storage mounts made read-only for the server (pseudo filesystems stay as they are).
_READ_ONLY = r"""
for m in $(awk '$3 ~ /^(ext[234]|xfs|btrfs|overlay|tmpfs|devtmpfs)$/ {print $2}' /proc/self/mounts \
           | grep -v -e '^/sys' -e '^/mnt/sandboxing' -e '^/run/docker'); do
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
for d in / /tmp /var/tmp /dev/shm "$HOME" "$PWD"; do
  if touch "$d/.zero-trace-probe" 2>/dev/null; then echo "still writable: $d" >&2; exit 97; fi
done
exec "$@"
"""
_SCANNED_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def _snapshot() -> set[str]:
    seen = set()
    for top in (*_SCANNED_DIRS, os.getcwd()):
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d not in (".git", ".venv", "__pycache__")]
            seen.update(os.path.join(root, f) for f in files)
    return seen


@pytest.fixture(scope="module")
def sealed_server(start_server):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to make the filesystem read-only")
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _READ_ONLY, "sh"]
    return start_server(wrapper=wrapper, log_level="debug")


@pytest.mark.timeout(120)
def test_nothing_written_nothing_logged(sealed_server):
    server = sealed_server
    before = _snapshot()
    name = f"{MARKER}-secret-report.pdf"
    marked = make_pdf(2, marker=MARKER)
    locked = make_encrypted_pdf(1, user=MARKER)
    replies = [
        server.post("info", [marked], filenames=[name]),
        server.post("merge", [marked, marked], filenames=[name, "x" + name]),
        server.post("text", [marked], filenames=[name]),
        server.post("metadata", [marked], {"title": MARKER}, filenames=[name]),
        server.post("watermark", [marked], {"text": MARKER}, filenames=[name]),
        server.post("encrypt", [marked], {"password": MARKER}, filenames=[name]),
        server.post("info", [locked], {"password": MARKER}, filenames=[name]),
        server.post("info", [locked], {"password": MARKER + "wrong"}, filenames=[name]),
        server.post("info", [MARKER.encode() * 100], filenames=[name]),        # 415
        server.post("rotate", [marked], {"angle": MARKER}, filenames=[name]),  # 400
        server.post("rotate", [marked], {MARKER: "1"}, filenames=[name]),      # 400
        server.post("info", [b"%PDF-1.4\n" + MARKER.encode() * 50], filenames=[name]),  # 422
        server.request("POST", f"/api/v1/rotate?angle=90&password={MARKER}", marked,
                       {"Content-Type": "application/pdf"}),
        server.request("POST", f"/api/v1/{MARKER}", marked, {"Content-Type": "application/pdf"}),
        server.get(f"/{MARKER}/x?{MARKER}=1", headers={"X-Request-ID": MARKER + " <>",
                                                       "User-Agent": MARKER}),
    ]
    statuses = [r.status for r in replies]
    assert statuses[:7] == [200] * 7, statuses
    assert statuses[7:] == [422, 415, 400, 400, 422, 200, 404, 404], statuses
    assert MARKER.encode() in replies[2].body   # the marker really went through a child
    server.stop()
    log = "\n".join(server.lines)
    assert server.lines, "the server logged nothing at all"
    assert MARKER not in log
    assert "secret-report" not in log
    # No client address unless NOTRACE_LOG_CLIENT_IP=1 (the listening line names our own).
    assert not [line for line in server.lines if "127.0.0.1" in line and "listening" not in line]
    assert "still writable" not in log
    new_files = _snapshot() - before
    assert not new_files, sorted(new_files)[:10]
