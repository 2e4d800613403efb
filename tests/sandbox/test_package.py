"""The package's public names resolve, and the fork server's import stays small."""
from __future__ import annotations

import subprocess
import sys

import pytest

import sandbox

pytestmark = pytest.mark.timeout(60)


def test_every_public_name_resolves_to_its_home():
    from sandbox.result import STATUSES
    from sandbox.runner import Sandbox
    assert sandbox.Sandbox is Sandbox and sandbox.STATUSES is STATUSES
    assert all(getattr(sandbox, name) is not None for name in sandbox.__all__)
    assert set(sandbox.__all__) <= set(dir(sandbox))
    with pytest.raises(AttributeError):
        sandbox.no_such_name


def test_the_fork_servers_import_leaves_asyncio_out():
    # Every module the fork server imports is in every child's pages.
    code = (f"import sys; sys.path[:0] = {sys.path!r}; import sandbox.forkserver; "
            "print('asyncio' in sys.modules)")
    done = subprocess.run([sys.executable, "-I", "-c", code],
                          capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "False"
