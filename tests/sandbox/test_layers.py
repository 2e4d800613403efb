"""The isolation layers, for real: each test forks a child, confines it, attempts an escape
and checks it fails the right way. No mocks.

Runs as root (children drop to uid 65534) and as an unprivileged user (the lead runs
tests/sandbox under `setpriv` as 65534): tests whose meaning depends on it assert the
behaviour of each case. Forking here is fine: pytest is single-threaded.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import io
import json
import os
import resource
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pikepdf
import PIL.Image
import pypdf
import pyseccomp
import pytest

from sandbox.layers import LAYERS, ChildContext, LayerError, _sys, confine, probe_all
from sandbox.layers.landlock import abi_version, missing_rules
from sandbox.layers.namespaces import Namespaces
from sandbox.layers.rlimits import NOFILE, current_vm_bytes, tighten_for_job
from sandbox.layers.seccomp import ALLOWED, ALLOWED_IF, PATH_CALLS, names
from sandbox.limits import Limits
from sandbox.policy import LAYER_ORDER, Policy

# ../shared/corpus beside the checkout, wherever it is cloned (CI's is not /work/main)
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
CHILD_TIMEOUT_S = 20.0
_MIB = 1 << 20


# --- helpers ------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    """How a test child ended: its wait status, and the report it sent (None if it died
    before sending one)."""

    status: int
    report: dict | None

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def value(self) -> Any:
        assert self.signal is None and self.report is not None, f"child died: {self}"
        assert "error" not in self.report, f"child raised: {self.report}"
        return self.report["value"]

    def raised(self, error: str, errno_: int | None = None) -> None:
        """Assert the child's body raised `error` (an exception class name), with errno_."""
        assert self.signal is None and self.report is not None, f"child died: {self}"
        assert self.report.get("error") == error, self.report
        if errno_ is not None:
            assert self.report["errno"] == errno_, self.report


def in_child(body: Callable[[], Any], timeout_s: float = CHILD_TIMEOUT_S) -> Outcome:
    """Run body() in a forked child; it reports its return value (JSON) or its exception
    through a pipe and always ends in os._exit. Bounded: killed after timeout_s."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                report = {"value": body()}
            except Exception as exc:  # the outcome under test, reported, not raised
                report = {"error": type(exc).__name__, "errno": getattr(exc, "errno", None),
                          "message": str(exc)}
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(write_fd, data):]
        finally:
            os._exit(0)
    os.close(write_fd)
    deadline = time.monotonic() + timeout_s
    try:
        chunks = []
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([read_fd], [], [], remaining)[0]:
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    status = _sys.wait_bounded(pid, max(deadline - time.monotonic(), 0.1))
    return Outcome(status, json.loads(b"".join(chunks)) if chunks else None)


@pytest.fixture(scope="module")
def available() -> dict[str, bool]:
    """probe_all()'s verdict, as the fork server computes it once."""
    return {status.name: status.available for status in probe_all()}


def confine_with(names_: tuple[str, ...], limits: Limits = Limits()) -> ChildContext:
    """In the child: confine() with only the named layers, the others opted out of."""
    policy = Policy(allow_missing_layers=frozenset(LAYER_ORDER) - set(names_))
    ctx = ChildContext(policy, limits, current_vm_bytes(), (), os.geteuid() == 0)
    confine(ctx, {name: name in names_ for name in LAYER_ORDER})
    assert ctx.applied == [name for name in LAYER_ORDER if name in names_]
    return ctx


def all_layers(available: dict[str, bool]) -> tuple[str, ...]:
    """Every layer this host has: what a real child gets."""
    return tuple(name for name in LAYER_ORDER if available[name])


def status_field(name: str) -> str:
    return _sys.proc_status_field(name)


# --- probe and confine --------------------------------------------------------------------

def test_probe_all_reports_every_layer_in_order(available: dict[str, bool]) -> None:
    statuses = probe_all()
    assert [s.name for s in statuses] == list(LAYER_ORDER) == [layer.name for layer in LAYERS]
    by_name = {s.name: s for s in statuses}
    # The required layers exist on every supported host (kernel with Landlock, libseccomp).
    for name in ("privileges", "rlimits", "landlock", "seccomp"):
        assert by_name[name].available, by_name[name]
    assert by_name["landlock"].detail == f"Landlock ABI {abi_version()}" + missing_rules(
        abi_version())
    assert f"allow-list of {len(names())} calls" in by_name["seccomp"].detail
    if not by_name["namespaces"].available:  # e.g. "unshare(CLONE_NEWUSER) refused: EPERM"
        assert by_name["namespaces"].detail


def test_confine_refuses_a_required_layer_the_host_lacks() -> None:
    # privileges comes first, so nothing is applied to this (pytest) process.
    ctx = ChildContext(Policy(), Limits(), 0, (), False)
    with pytest.raises(LayerError, match="^privileges: required but unavailable"):
        confine(ctx, {name: name != "privileges" for name in LAYER_ORDER})
    assert ctx.applied == []


# --- privileges ---------------------------------------------------------------------------

def test_privileges_drop_root_capabilities_and_set_no_new_privs() -> None:
    was_root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()

    def body() -> dict:
        confine_with(("privileges",))
        pdeathsig = ctypes.c_int()
        _sys.prctl(_sys.PR_GET_PDEATHSIG, ctypes.addressof(pdeathsig))
        return {"uids": os.getresuid(), "gids": os.getresgid(), "groups": os.getgroups(),
                "caps": _sys.capabilities(), "bounding": _sys.bounding_set(),
                "ambient": status_field("CapAmb"), "nnp": status_field("NoNewPrivs"),
                "dumpable": _sys.prctl(_sys.PR_GET_DUMPABLE), "pdeathsig": pdeathsig.value}

    got = in_child(body).value
    if was_root:
        assert got["uids"] == [65534] * 3 and got["gids"] == [65534] * 3
        assert got["groups"] == []
        assert got["bounding"] == []  # dropped while still root
    else:
        # Nothing to drop to; the bounding set needs CAP_SETPCAP to shrink, and without
        # permitted capabilities and with no_new_privs nothing can be gained from it.
        assert got["uids"] == [uid] * 3 and got["gids"] == [gid] * 3
    assert got["caps"] == [0, 0, 0]
    assert got["ambient"] == "0000000000000000"
    assert got["nnp"] == "1"
    assert got["dumpable"] == 0
    assert got["pdeathsig"] == signal.SIGKILL


def test_privileges_child_dies_with_its_parent() -> None:
    """A grandchild applies Privileges; its parent exits; the kernel must kill it."""
    life_r, life_w = os.pipe()  # the grandchild holds life_w: EOF here means it died
    armed_r, armed_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(life_r)
            if os.fork() == 0:
                try:
                    confine_with(("privileges",))
                    os.write(life_w, str(os.getpid()).encode())
                    os.write(armed_w, b"!")
                    time.sleep(CHILD_TIMEOUT_S)
                finally:
                    os._exit(0)
            os.close(life_w)
            select.select([armed_r], [], [], CHILD_TIMEOUT_S)
        finally:
            os._exit(0)
    os.close(life_w)
    os.close(armed_w)
    try:
        _sys.wait_bounded(middle, CHILD_TIMEOUT_S)
        grandchild = int(os.read(life_r, 32))
        readable = select.select([life_r], [], [], CHILD_TIMEOUT_S)[0]
        died = bool(readable) and os.read(life_r, 1) == b""
        if not died:
            os.kill(grandchild, signal.SIGKILL)
        assert died, "the grandchild outlived its parent"
    finally:
        os.close(life_r)
        os.close(armed_r)


# --- namespaces ---------------------------------------------------------------------------

def test_namespaces_give_a_new_network_and_no_capabilities(available: dict[str, bool]) -> None:
    if not available["namespaces"]:
        # Inside a container: a real child goes on without them, and says so.
        status = Namespaces().probe()
        assert not status.available and status.detail
        assert not Policy().required("namespaces")
        return
    parent_net = os.stat("/proc/self/ns/net").st_ino

    def body() -> dict:
        confine_with(("privileges", "namespaces"))
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=5)  # TEST-NET-1
            reached = "connected"
        except OSError as exc:
            reached = errno.errorcode.get(exc.errno, str(exc))
        return {"net": os.stat("/proc/self/ns/net").st_ino, "uid": os.getuid(),
                "caps": _sys.capabilities(), "bounding": _sys.bounding_set(),
                "dumpable": _sys.prctl(_sys.PR_GET_DUMPABLE), "reached": reached}

    got = in_child(body).value
    assert got["net"] != parent_net
    assert got["uid"] == 65534  # unmapped in the new user namespace: the overflow uid
    # The new user namespace granted a full set; the layer dropped all of it.
    assert got["caps"] == [0, 0, 0] and got["bounding"] == []
    assert got["dumpable"] == 0  # re-armed after the credential change
    assert got["reached"] == "ENETUNREACH"  # only a down loopback in there


def test_namespaces_refused_as_in_a_container_are_skipped_and_said() -> None:
    """Docker's default seccomp profile answers unshare(CLONE_NEWUSER) with EPERM: do the
    same with a real filter, then probe and confine as a child in a container would."""
    def body() -> dict:
        docker_like = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
        docker_like.add_rule(pyseccomp.ERRNO(errno.EPERM), "unshare")
        docker_like.load()
        statuses = {s.name: s for s in probe_all()}
        ctx = ChildContext(Policy(), Limits(), current_vm_bytes(), (), os.geteuid() == 0)
        confine(ctx, {name: status.available for name, status in statuses.items()})
        return {"detail": statuses["namespaces"].detail, "applied": ctx.applied}

    assert in_child(body).value == {
        "detail": "unshare(CLONE_NEWUSER) refused: EPERM (inside a container?)",
        "applied": ["privileges", "rlimits", "landlock", "seccomp"]}


# --- rlimits ------------------------------------------------------------------------------

def test_rlimits_memory_past_the_limit_raises_memory_error(available: dict[str, bool]) -> None:
    def body() -> dict:
        confine_with(all_layers(available), Limits(memory_mb=64))
        try:
            bytearray(256 * _MIB)
            big = "allocated"
        except MemoryError:
            big = "MemoryError"
        small = len(bytearray(8 * _MIB))  # still works under the limit
        return {"big": big, "small": small,
                "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
                "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
                "core": resource.getrlimit(resource.RLIMIT_CORE)}

    got = in_child(body).value
    assert got["big"] == "MemoryError" and got["small"] == 8 * _MIB
    assert got["fsize"] == [0, 0] and got["core"] == [0, 0]
    assert got["nofile"] == [NOFILE, NOFILE]


def test_rlimits_cpu_kills_a_busy_loop() -> None:
    def body() -> None:
        confine_with(("privileges", "rlimits"), Limits(cpu_s=1))
        while True:
            pass

    assert in_child(body).signal in (signal.SIGXCPU, signal.SIGKILL)


def test_rlimits_tighten_for_job_only_lowers() -> None:
    def limits_now() -> list:
        return [resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CPU)]

    def body() -> dict:
        ctx = confine_with(("privileges", "rlimits"), Limits(memory_mb=512, cpu_s=20))
        seen = {"start": limits_now()}
        tighten_for_job(Limits(memory_mb=64, cpu_s=3), ctx.baseline_vm_bytes)
        seen["tighter"] = limits_now()
        tighten_for_job(Limits(memory_mb=4096, cpu_s=100), ctx.baseline_vm_bytes)
        seen["looser"] = limits_now()
        seen["baseline"] = ctx.baseline_vm_bytes
        return seen

    got = in_child(body).value
    base = got["baseline"]
    (as_start, cpu_start), (as_tight, cpu_tight) = got["start"], got["tighter"]
    assert as_start == [base + 512 * _MIB] * 2 and as_tight == [base + 64 * _MIB] * 2
    assert cpu_start[1] == cpu_start[0] + 1 and 20 <= cpu_start[0] <= 21
    assert cpu_tight[1] == cpu_tight[0] + 1 and 3 <= cpu_tight[0] <= 4
    assert got["looser"] == got["tighter"]


# --- landlock -----------------------------------------------------------------------------

def test_landlock_allows_only_the_readable_files() -> None:
    def body() -> dict:
        with open("/etc/passwd", "rb"):
            pass  # readable before: what follows is Landlock's doing
        confine_with(("privileges", "landlock"))
        seen = {"urandom": len(Path("/dev/urandom").open("rb").read(16))}
        for key, attempt in {"read": lambda: open("/etc/passwd", "rb"),
                             "write": lambda: open("/tmp/notrace-landlock-x", "wb"),
                             "listdir": lambda: os.listdir("/"),
                             "connect": lambda: socket.create_connection(("127.0.0.1", 9), 5),
                             "signal": lambda: os.kill(os.getppid(), 0)}.items():
            try:
                attempt()
                seen[key] = "allowed"
            except OSError as exc:
                seen[key] = type(exc).__name__
        return seen

    got = in_child(body).value
    assert got == {"urandom": 16, "read": "PermissionError", "write": "PermissionError",
                   "listdir": "PermissionError", "connect": "PermissionError",
                   "signal": "PermissionError"}
    assert not Path("/tmp/notrace-landlock-x").exists()


# --- seccomp ------------------------------------------------------------------------------

_RAW_CLONE3 = 435
_PR_SET_DUMPABLE = 4


@pytest.mark.parametrize("escape", [
    pytest.param(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), id="socket"),
    pytest.param(os.fork, id="fork"),
    pytest.param(lambda: os.kill(os.getppid(), 0), id="kill-parent"),
    pytest.param(lambda: os.execv("/bin/true", ["true"]), id="execve"),
    pytest.param(lambda: _sys.unshare(0x40000000), id="unshare"),
    pytest.param(lambda: _sys.prctl(_PR_SET_DUMPABLE, 1), id="set-dumpable"),
    pytest.param(lambda: os.memfd_create("x"), id="memfd_create"),
])
def test_seccomp_kills_an_escape_with_sigsys(available: dict[str, bool], escape: Callable) -> None:
    def body() -> None:
        confine_with(all_layers(available))
        escape()

    outcome = in_child(body)
    assert outcome.signal == signal.SIGSYS, outcome


def test_seccomp_refuses_clone3_with_enosys_threads_run(available: dict[str, bool]) -> None:
    def body() -> dict:
        confine_with(all_layers(available))
        try:
            _sys.syscall(_RAW_CLONE3, None, 0)
            clone3 = "allowed"
        except OSError as exc:
            clone3 = errno.errorcode[exc.errno]
        results: list[int] = []
        threads = [threading.Thread(target=lambda n=n: results.append(n * n)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CHILD_TIMEOUT_S)
        os.kill(os.getpid(), 0)  # signalling itself stays allowed
        return {"clone3": clone3, "results": sorted(results)}

    assert in_child(body).value == {"clone3": "ENOSYS", "results": [0, 1, 4, 9]}


def test_seccomp_without_landlock_answers_path_calls_eacces() -> None:
    def body() -> dict:
        confine_with(("privileges", "rlimits", "seccomp"))
        seen = {"fstat": os.fstat(0).st_mode > 0}  # fstat by fd (newfstatat AT_EMPTY_PATH)
        for key, attempt in {"open": lambda: os.open("/etc/passwd", os.O_RDONLY),
                             "stat": lambda: os.stat("/etc/passwd")}.items():
            try:
                attempt()
                seen[key] = "allowed"
            except OSError as exc:
                seen[key] = errno.errorcode[exc.errno]
        return seen

    assert in_child(body).value == {"fstat": True, "open": "EACCES", "stat": "EACCES"}


def test_seccomp_allow_list_holds_no_dangerous_call() -> None:
    forbidden = {
        "socket", "socketpair", "connect", "bind", "accept", "accept4", "listen", "execve",
        "execveat", "fork", "vfork", "ptrace", "mount", "umount2", "unshare", "setns",
        "keyctl", "add_key", "request_key", "bpf", "io_uring_setup", "io_uring_enter",
        "io_uring_register", "perf_event_open", "setuid", "setgid", "setreuid", "setregid",
        "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capset", "chroot",
        "pivot_root", "kexec_load", "kexec_file_load", "init_module", "finit_module",
        "userfaultfd", "process_vm_readv", "process_vm_writev", "open_by_handle_at",
        "memfd_create", "ftruncate", "truncate", "unlink", "unlinkat", "mkdir", "mkdirat",
        "rename", "renameat", "renameat2", "chmod", "fchmod", "fchmodat", "chown", "fchown",
        "lchown", "fchownat", "pipe", "pipe2", "clone3", "seccomp", "get_robust_list",
    }
    assert forbidden.isdisjoint(names())
    assert names() == tuple(sorted({*ALLOWED, *ALLOWED_IF, *PATH_CALLS}))


# --- the real work, fully confined --------------------------------------------------------

def _pdf_work(first: bytes, second: bytes, *, encrypt: bool) -> dict:
    """Merge two PDFs (pikepdf), optionally encrypt with AES-256, extract text (pypdf),
    re-encode an image (Pillow), all in memory."""
    merged = pikepdf.new()
    for data in (first, second):
        merged.pages.extend(pikepdf.open(io.BytesIO(data)).pages)
    plain = io.BytesIO()
    merged.save(plain)
    sizes = {"merged": len(plain.getvalue())}
    if encrypt:  # qpdf opens /dev/urandom by path for the key
        encrypted = io.BytesIO()
        merged.save(encrypted, encryption=pikepdf.Encryption(owner="o", user="u", aes=True, R=6))
        sizes["encrypted"] = len(pikepdf.open(io.BytesIO(encrypted.getvalue()), password="u").pages)
    sizes["text"] = len("".join(page.extract_text() or "" for page in pypdf.PdfReader(plain).pages))
    image = PIL.Image.new("RGB", (64, 64), "red").convert("L").resize((32, 32))
    png = io.BytesIO()
    image.save(png, "PNG")
    sizes["png"] = len(png.getvalue()) > 0
    return sizes


def test_workload_runs_confined(available: dict[str, bool]) -> None:
    first = (CORPUS / "pdf-rs__pdf-sample.pdf").read_bytes()
    second = (CORPUS / "pdf-rs__jpeg.pdf").read_bytes()

    def body() -> dict:
        # Warm-up, as the fork server does: the libraries import modules lazily. Without
        # encryption, so that qpdf first opens /dev/urandom under Landlock.
        _pdf_work(first, second, encrypt=False)
        confine_with(all_layers(available))
        in_thread: dict = {}
        thread = threading.Thread(
            target=lambda: in_thread.update(_pdf_work(first, second, encrypt=True)))
        thread.start()
        thread.join(CHILD_TIMEOUT_S)
        return {"main": _pdf_work(first, second, encrypt=True), "thread": in_thread}

    got = in_child(body).value
    assert got["main"] == got["thread"]
    assert got["main"]["encrypted"] == 2 and got["main"]["text"] > 0 and got["main"]["png"]


def test_precompiled_filter_equals_a_fresh_build_for_the_pid():
    # The fork server compiles the filter once with a stand-in pid; a child patches in its
    # own. The result must be exactly what libseccomp would have built for that pid.
    from sandbox.layers import seccomp as layer
    for landlock_applied in (True, False):
        for pid in (2, 4242, 4_194_303):
            fresh = layer.build_filter(pid, landlock_applied)
            r, w = os.pipe()
            with os.fdopen(w, "wb") as sink:
                fresh.export_bpf(sink)
            with os.fdopen(r, "rb") as source:
                expected = source.read()
            assert layer.for_pid(layer.compiled(landlock_applied), pid) == expected
        assert layer.compiled(landlock_applied).count(
            layer._PID_STANDIN.to_bytes(4, "little")) >= 1


@pytest.mark.parametrize("abi, says", [
    (3, ["TCP bind/connect", "signal and abstract-socket scopes"]),   # Debian 12's 6.1
    (5, ["signal and abstract-socket scopes"]),
    (6, []), (7, []),
])
def test_an_older_landlock_says_what_it_cannot_refuse(abi, says):
    detail = missing_rules(abi)
    assert all(part in detail for part in says), detail
    assert bool(detail) == bool(says), detail
    if abi < 4:
        assert "TCP" in detail
    else:
        assert "TCP" not in detail
