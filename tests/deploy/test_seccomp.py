"""Offline checks of seccomp.json: it is exactly what deploy/seccomp/trace.py derives from
the committed trace, the sandbox children's list and the documented margin; it refuses by
default, allows markedly fewer calls than Docker's default, keeps what the sandbox needs
inside the container and never allows the calls that would widen the wall.
(tests/container/ checks it on a real running container.)"""
from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trace():
    spec = importlib.util.spec_from_file_location("notrace_seccomp_trace",
                                                  ROOT / "deploy" / "seccomp" / "trace.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def profile() -> dict:
    return json.loads((ROOT / "seccomp.json").read_text())


def _allowed(profile: dict) -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}


def test_committed_profile_matches_its_inputs(trace, capsys):
    assert trace.check() == 0, capsys.readouterr().err


def test_refuses_by_default_on_64_bit_abis_only(profile):
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    assert {a["architecture"] for a in profile["archMap"]} == {"SCMP_ARCH_X86_64",
                                                               "SCMP_ARCH_AARCH64"}
    assert all(a["subArchitectures"] == [] for a in profile["archMap"])


def test_markedly_smaller_than_dockers_default(trace, profile):
    n = len(_allowed(profile))
    print(f"seccomp.json allows {n} calls; Docker's default about {trace.DOCKER_DEFAULT_ALLOWED}")
    assert n <= trace.DOCKER_DEFAULT_ALLOWED // 2, n


def test_keeps_what_the_sandbox_needs(trace, profile):
    allowed = _allowed(profile)
    assert set(trace.REQUIRED) <= allowed
    assert {"seccomp", "prctl", "memfd_create", "landlock_create_ruleset",
            "landlock_add_rule", "landlock_restrict_self", "clone"} <= allowed
    sandbox_seccomp = pytest.importorskip("sandbox.layers.seccomp")
    assert set(sandbox_seccomp.names()) - set(trace.REFUSED) <= allowed


def test_never_allows_what_widens_the_wall(trace, profile):
    allowed = _allowed(profile)
    for name in ("unshare", "setns", "mount", "keyctl", "io_uring_setup", "io_uring_enter",
                 "bpf", "ptrace", "userfaultfd", "perf_event_open", "open_by_handle_at"):
        assert name in trace.REFUSED and name not in allowed, name


def test_clone_without_namespaces_and_clone3_enosys(profile):
    (clone,) = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                              "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = [r for r in profile["syscalls"] if r["names"] == ["clone3"]]
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38


def test_margin_is_short_and_documented(trace):
    assert len(trace.MARGIN) <= 40
    assert all(reason.strip() for reason in trace.MARGIN.values())
    assert all(reason.strip() for reason in trace.REFUSED.values())
