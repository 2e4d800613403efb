"""The sandbox suite again, as an unprivileged user: isolation must not depend on root."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.mark.timeout(300)
def test_sandbox_suite_passes_as_an_unprivileged_user():
    if os.geteuid() != 0:
        # Already unprivileged: this very run is the unprivileged run.
        assert os.geteuid() != 0
        return
    pytest_as_nobody(["tests/sandbox", "-x", "-k", "not ten_thousand and not unprivileged"],
                     timeout_s=280)


def pytest_as_nobody(args: list[str], timeout_s: float) -> None:
    """Run pytest with `args` as the unprivileged user, in a private mount namespace
    where this Python is reachable; fail with its output's tail unless all passed."""
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop to an unprivileged user"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp",
           "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"}
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    completed = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         expose_interpreter_script() + ' exec "$@"', "sh", *command],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    tail = completed.stdout[-3000:] + completed.stderr[-2000:]
    assert completed.returncode == 0, tail
    assert " passed" in completed.stdout and " failed" not in completed.stdout, tail


def expose_interpreter_script() -> str:
    """Shell lines that, inside a private mount namespace, make this Python reachable for
    an unprivileged user when it lives under a directory closed to others (pyenv in /root):
    a tmpfs over the closed directory with only the interpreter's tree bound back in."""
    prefix = Path(sys.base_prefix).resolve()
    closed = next((p for p in reversed(prefix.parents) if not os.stat(p).st_mode & 0o001), None)
    if closed is None:
        return ""
    return (f"set -e; mkdir -p /tmp/.notrace-py; mount --bind {prefix} /tmp/.notrace-py; "
            f"mount -t tmpfs -o mode=755 tmpfs {closed}; mkdir -p {prefix}; "
            f"mount --bind /tmp/.notrace-py {prefix};")
