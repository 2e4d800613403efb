"""Fixtures that build and run the REAL image on a real Docker engine.

Provisioning the engine and the base image is .ci/provision-docker's job; when
NOTRACE_REQUIRE_CONTAINER=1 (CI) and no engine answers, the fixture runs it once, and
anything still missing FAILS the tests. Without that variable, they are skipped with the
reason. The image is built once per session (BASE=localbase:py312, --network host,
--force-rm) and removed at the end, with the builder stage's leftovers; the base image
stays cached. The container has no network: test traffic reaches the service on the
container's own loopback through `nsenter -t PID -n` (never an outside address).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.required import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKLOAD = ROOT / "deploy" / "seccomp" / "workload.py"
PROVISION = ROOT / ".ci" / "provision-docker"
ENGINE = Requirement("NOTRACE_REQUIRE_CONTAINER", "container tests need a Docker engine",
                     "run .ci/provision-docker")
REQUIRE = ENGINE.required
unavailable = ENGINE.unavailable
BASE_IMAGE = os.environ.get("NOTRACE_TEST_BASE_IMAGE", "localbase:py312")
BUILD_TIMEOUT_S = 420
UP_TIMEOUT_S = 120


def run(*args: str, check: bool = True, timeout: float = 120, input: str | None = None,
        env: dict | None = None, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                            input=input, env={**os.environ, **(env or {})}, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:4])}... exited {result.returncode}:\n"
                             f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def docker(*args: str, **kw) -> subprocess.CompletedProcess:
    return run("docker", *args, **kw)


def _engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return run("docker", "info", check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _provision() -> str:
    result = run("bash", str(PROVISION), check=False, timeout=600)
    return (result.stdout + result.stderr)[-1500:]


@pytest.fixture(scope="session")
def engine() -> None:
    """A Docker engine with the compose plugin and the base image, or skip/fail."""
    missing = _missing()
    if missing and REQUIRE and PROVISION.exists():
        log = _provision()
        missing = _missing()
        if missing:
            unavailable(f"{missing}, even after .ci/provision-docker:\n{log}")
    if missing:
        unavailable(missing)


def _missing() -> str:
    if not _engine_answers():
        return "no Docker engine answers `docker info`"
    if run("docker", "compose", "version", check=False).returncode != 0:
        return "the Compose v2 plugin (`docker compose`) is missing"
    if run("docker", "image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        return f"the base image {BASE_IMAGE} is missing"
    return ""


@dataclasses.dataclass(frozen=True)
class Image:
    tag: str
    size_bytes: int
    base: str
    base_size_bytes: int
    build_s: float


def _build(*build_args: str):
    """Build the image (with these --build-arg values), yield it, remove it."""
    tag = f"notrace:test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    args = [item for arg in (f"BASE={BASE_IMAGE}", *build_args) for item in ("--build-arg", arg)]
    result = docker("build", "--network", "host", "--force-rm", *args, "-t", tag, str(ROOT),
                    check=False, timeout=BUILD_TIMEOUT_S)
    build_s = time.monotonic() - started
    try:
        if result.returncode != 0:
            pytest.fail(f"docker build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
                        pytrace=False)
        size = int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)
        base = int(docker("image", "inspect", "-f", "{{.Size}}", BASE_IMAGE).stdout)
        yield Image(tag, size, BASE_IMAGE, base, build_s)
    finally:
        docker("rmi", "-f", tag, check=False)
        docker("image", "prune", "-f", "--filter", "label=org.notrace.stage=builder",
               check=False)


@pytest.fixture(scope="session")
def image(engine) -> Image:
    """The default image."""
    yield from _build()


@pytest.fixture(scope="session")
def ocr_image(engine) -> Image:
    """The OCR image: docker build --build-arg NOTRACE_EXTRAS=ocr."""
    yield from _build("NOTRACE_EXTRAS=ocr")


@dataclasses.dataclass
class Service:
    """One compose project running docker-compose.yml with the test image."""

    project: str
    files: tuple[str, ...]
    env: dict

    def compose(self, *args: str, timeout: float = UP_TIMEOUT_S, check: bool = True):
        flags = [a for f in self.files for a in ("-f", f)]
        # cwd: compose reads seccomp=./seccomp.json relative to where it runs.
        return run("docker", "compose", "-p", self.project, *flags, *args, env=self.env,
                   timeout=timeout, check=check, cwd=ROOT)

    def up(self) -> None:
        result = self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout",
                              str(UP_TIMEOUT_S - 10), check=False)
        if result.returncode != 0:
            logs = self.compose("logs", "--no-color", "--tail", "40", check=False)
            raise AssertionError(f"compose up failed:\n{result.stderr[-2000:]}\n"
                                 f"{logs.stdout[-3000:]}")

    def down(self) -> None:
        self.compose("down", "--remove-orphans", "--timeout", "45", timeout=90, check=False)

    @property
    def container(self) -> str:
        ids = self.compose("ps", "-q", "notrace").stdout.split()
        assert len(ids) == 1, f"expected one notrace container, got {ids}"
        return ids[0]

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.container).stdout)[0]

    def pid(self) -> int:
        return int(docker("inspect", "-f", "{{.State.Pid}}", self.container).stdout)

    def probe(self, script: str, timeout: float = 60, check: bool = True):
        """Run a Python script inside the container (as its user, under its profile)."""
        return docker("exec", "-i", self.container, "python3", "-", input=script,
                      timeout=timeout, check=check)

    def workload(self, *args: str, timeout: float = 300) -> dict:
        """workload.py with the host's Python, in the container's network namespace."""
        result = run("nsenter", "-t", str(self.pid()), "-n", sys.executable, str(WORKLOAD),
                     "--base", "http://127.0.0.1:8000", *args, timeout=timeout)
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def service(image, tmp_path_factory) -> Service:
    """docker-compose.yml up with the test image; no network (override: network_mode
    none, so the 127.0.0.1:8000 binding of the real file is not needed here)."""
    override = tmp_path_factory.mktemp("compose") / "compose.test.yml"
    override.write_text(
        "services:\n"
        "  notrace:\n"
        f"    image: {image.tag}\n"
        "    network_mode: none\n"
        "    ports: !reset []\n"
    )
    svc = Service(project=f"notrace-test-{uuid.uuid4().hex[:8]}",
                  files=(str(ROOT / "docker-compose.yml"), str(override)),
                  env={"BASE_IMAGE": image.base, "NOTRACE_IMAGE": image.tag})
    try:
        svc.up()
        yield svc
    finally:
        svc.down()
