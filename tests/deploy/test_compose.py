"""Offline checks of docker-compose.yml, the Dockerfile and .dockerignore.

docker-compose.yml is validated against the Compose Specification's JSON schema as
vendored by the PyPI package check-jsonschema (pinned in the test extras): the file is
located through the package's metadata, the package itself is not imported.
"""
from __future__ import annotations

import importlib.metadata
import json
import pathlib
import re

import jsonschema
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA_PACKAGE = "check-jsonschema"
SCHEMA_PATH = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
TMPFS = "/tmp:size=64m,mode=1777,noexec,nosuid,nodev"


def compose_schema() -> dict:
    try:
        dist = importlib.metadata.distribution(SCHEMA_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{SCHEMA_PACKAGE} is not installed: it ships the Compose Specification "
                    "schema (pip install -c deploy/constraints.txt '.[test]')")
    return json.loads(pathlib.Path(dist.locate_file(SCHEMA_PATH)).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def service(compose) -> dict:
    assert list(compose["services"]) == ["notrace"], "one service, named notrace"
    return compose["services"]["notrace"]


def test_compose_validates_against_the_compose_spec(compose):
    schema = compose_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(compose)


def test_compose_schema_check_is_real():
    # Guards the check itself: the schema must reject an unknown service key.
    schema = compose_schema()
    bad = {"services": {"notrace": {"image": "x", "read_olny": True}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(bad)


def _bytes(size: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)b?", str(size).lower())
    assert m, f"unexpected size {size!r}"
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]


def test_compose_hardening(service):
    assert service["build"]["context"] == "."
    assert service["build"]["args"]["BASE"] == "${BASE_IMAGE:-python:3.12-slim}"
    assert service["ports"] == ["127.0.0.1:8000:8000"]
    assert service["read_only"] is True
    assert service["tmpfs"] == [TMPFS]
    assert "volumes" not in service and "volumes_from" not in service
    assert service["cap_drop"] == ["ALL"] and "cap_add" not in service
    assert service["security_opt"] == ["no-new-privileges:true", "seccomp=./seccomp.json"]
    assert _bytes(service["mem_limit"]) == _bytes(service["memswap_limit"])
    assert float(service["cpus"]) > 0
    assert int(service["pids_limit"]) > 0
    assert service["ulimits"] == {"core": 0}   # no core files (the server sets its own too)
    assert service["user"] == "10001:10001"
    assert service["restart"] == "unless-stopped"
    assert service["ipc"] == "none"
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert "curl" not in " ".join(service["healthcheck"]["test"])
    assert not service.get("privileged", False)


def test_no_volumes_anywhere(compose):
    assert "volumes" not in compose
    assert "configs" not in compose and "secrets" not in compose


def test_running_jobs_uploads_and_answers_fit_mem_limit(service):
    """Each running job may fill its child's memory and its output memfd (shared memory,
    charged to the container too); uploads and answers in flight have their own budget."""
    env = service["environment"]
    per_job = int(env["NOTRACE_CHILD_MEMORY_MB"]) + int(env["NOTRACE_CHILD_OUTPUT_MB"])
    jobs = int(env["NOTRACE_WORKERS"]) * per_job << 20
    in_flight = int(env["NOTRACE_MAX_INFLIGHT_MB"]) << 20
    tmpfs = 64 << 20
    server_reserve = 128 << 20      # server, fork server, warm children's baseline
    assert jobs + in_flight + tmpfs + server_reserve <= _bytes(service["mem_limit"])


def test_every_setting_is_listed_with_a_valid_value(service):
    settings = pytest.importorskip("notrace.settings")
    env = {k: str(v) for k, v in service["environment"].items()}
    expected = {s.env for s in settings.SETTINGS} - {"NOTRACE_HOST", "NOTRACE_PORT"}
    assert expected <= set(env), f"missing from compose: {sorted(expected - set(env))}"
    settings.load(environ=env)    # raises SettingsError on a bad value
    assert float(env["NOTRACE_SHUTDOWN_GRACE_S"]) < int(service["stop_grace_period"].rstrip("s"))


# ---- Dockerfile and .dockerignore (static; tests/container/ builds the real thing) ----

@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    lines, joined = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        joined += raw.rstrip("\\") + " "
        if not raw.endswith("\\"):
            if joined.strip():
                lines.append(joined.strip())
            joined = ""
    return lines


def _instructions(lines: list[str], name: str) -> list[str]:
    return [l.split(None, 1)[1] for l in lines if l.split(None, 1)[0].upper() == name]


def test_dockerfile_shape(dockerfile):
    assert dockerfile[0] == "ARG BASE=python:3.12-slim"
    froms = _instructions(dockerfile, "FROM")
    assert froms == ["${BASE} AS builder", "${BASE}"], froms
    final = dockerfile[max(i for i, l in enumerate(dockerfile) if l.startswith("FROM ")):]
    assert not _instructions(dockerfile, "VOLUME"), "no VOLUME: nothing may persist"
    assert _instructions(final, "USER") == ["10001:10001"]
    assert _instructions(final, "EXPOSE") == ["8000"]
    (health,) = _instructions(final, "HEALTHCHECK")
    assert "/health" in health and "urllib" in health and "curl" not in health
    (entry,) = _instructions(final, "ENTRYPOINT")
    assert json.loads(entry)[:4] == ["notrace", "serve", "--host", "0.0.0.0"]
    copies = _instructions(final, "COPY")
    assert copies == ["--from=builder /opt/notrace /opt/notrace"], copies


def test_dockerignore_keeps_out_what_must_not_ship():
    patterns = {l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
                if l.strip() and not l.startswith("#")}
    for needed in (".git", "tests", "fuzz", "bench", "**/__pycache__", ".pytest_cache",
                   ".hypothesis", ".env", "**/.env", "**/.env.*", ".venv"):
        assert needed in patterns, f".dockerignore lacks {needed}"


def test_compose_config_accepts_the_file():
    # The real Compose implementation as a second opinion, where it is installed.
    import shutil
    import subprocess
    if not shutil.which("docker") or subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed (the schema test above still ran)")
    result = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"),
                             "config", "-q"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", [".ci/provision-docker", "deploy/verify-container.sh"])
def test_shell_scripts_parse(script):
    import subprocess
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
