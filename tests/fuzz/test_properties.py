"""Properties of every operation through the REAL sandbox (fork server, confined children).

Runs in the test process; jobs run in sandbox children. The CI profile is bounded (a few
minutes on 2 cores) and reproducible: the seed is printed at the start, and
NOTRACE_FUZZ_SEED=<seed> replays the same run. Longer runs: `python -m fuzz.run` (see
fuzz/run.py), or NOTRACE_FUZZ_PROFILE=long here.
"""
from __future__ import annotations

import pytest

from fuzz.properties import LAWS, Service, hypothesis_tests, profile

PROFILE = profile()
# A law makes up to ~6 quick jobs per example; the contract may meet inputs that run to the
# wall limit (5 s), so its bound is looser. Both stay far below a real hang's cost.
TIMEOUT_S = 600 if PROFILE.name == "ci" else 24 * 3600


@pytest.fixture(scope="module")
def service(pytestconfig):
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:  # past pytest's capture: the seed matters most when it fails
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)

    say(f"notrace fuzz: profile={PROFILE.name} seed={PROFILE.seed} examples={PROFILE.examples} "
        f"(replay with NOTRACE_FUZZ_SEED={PROFILE.seed})")
    try:
        running = Service()
        running.call("info", [b"%PDF-1.0\n"])  # starts the fork server
    except Exception as exc:  # noqa: BLE001  no sandbox on this host: say why, do not fail
        pytest.skip(f"the sandbox cannot start here: {exc}")
    yield running
    running.close()  # first: the sandbox's CPU is counted once its processes are reaped
    say(f"notrace fuzz throughput: {running.throughput.line()}")


@pytest.fixture(scope="module")
def properties(service):
    return hypothesis_tests(service, PROFILE)


@pytest.mark.timeout(TIMEOUT_S)
@pytest.mark.parametrize("name", ["contract", *LAWS])
def test_property(properties, name):
    properties[name]()
