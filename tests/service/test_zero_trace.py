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
            # pytest-of-*: pytest's own temporary directories (this run's or another's on
            # the same machine: not the server's, which cannot write at all).
            dirs[:] = [d for d in dirs if d not in (".git", ".venv", "__pycache__")
                       and not d.startswith("pytest-of-")]
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
        server.post("info", [MARKER.encode() * 100], filenames=[name]),        # 415/422
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
    # [8]: the parser judges unknown bytes (422, or 415 when it finds nothing of a PDF);
    # [12]: a password in the query string is refused (400), and not logged either.
    assert statuses[7:] == [422, statuses[8], 400, 400, 422, 400, 404, 404], statuses
    assert statuses[8] in (415, 422), statuses
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


# The server as an unprivileged uid (65534), as in the container: then a dumpable
# process's /proc/PID files belong to that uid and an undumpable one's to root. It keeps
# CAP_DAC_READ_SEARCH only to reach this machine's interpreter (under /root).
_UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]


def _status_owner(pid: int) -> tuple[int, int]:
    """(the process's real uid, the owner of its /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        uid = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
    return uid, os.stat(f"/proc/{pid}/status").st_uid


@pytest.mark.timeout(120)
def test_the_server_writes_no_core_and_is_not_dumpable(start_server):
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv(1) to run the server as another uid")
    server = start_server(wrapper=_UNPRIVILEGED, workers=1)
    pid = server.process.pid
    with open(f"/proc/{pid}/limits") as limits:
        (core,) = [line for line in limits if line.startswith("Max core file size")]
    assert core.split()[4:6] == ["0", "0"], core     # soft and hard RLIMIT_CORE
    assert _status_owner(pid) == (65534, 0)          # PR_SET_DUMPABLE 0
    # Control: the fork server is exec'd (dumpable again), so the check can tell.
    (fork_server,) = [p for p in server.process.children()
                      if "sandbox.forkserver" in " ".join(p.cmdline())]
    assert _status_owner(fork_server.pid) == (65534, 65534)
    assert server.post("info", [make_pdf(1)]).status == 200
