"""Make the repository root importable: `fuzz` is not part of the installed distribution
(the image must not ship it), so it is imported from the checkout."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


import pytest  # noqa: E402  (after the path fix above)


@pytest.fixture(scope="module")
def sandbox_service():
    """A fuzz.properties.Service (real fork server, confined children) for one module;
    skipped, saying why, where the sandbox cannot start (as test_properties does)."""
    from fuzz.properties import Service

    running = Service()
    try:
        running.start()
    except Exception as exc:  # noqa: BLE001  no sandbox on this host: say why, do not fail
        running.close()
        pytest.skip(f"the sandbox cannot start here: {exc}")
    yield running
    running.close()
