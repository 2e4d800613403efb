#!/usr/bin/env python3
"""Derive, write and check seccomp.json, the container's own seccomp profile.

The profile is an allow-list: the default action refuses (EPERM) and only the system
calls the real service makes are allowed. It is the union of
  1. TRACED: what the real server, its fork server and its children called while the
     bundled workload (workload.py: every endpoint and operation, then a slice of the
     corpus) ran through the real image under `strace -f`, plus the image's HEALTHCHECK
     command traced the same way. Written to deploy/seccomp/traced.txt by --trace.
  2. CHILD: the sandbox's own allow-list for its children (sandbox.layers.seccomp.names()),
     since a call refused by the container would make a confined child fail.
  3. MARGIN: a short, documented list (below) of calls that a run may or may not show.
minus REFUSED (below), which the profile must never allow, whatever a trace shows.
`clone` is allowed only without namespace flags and clone3 answers ENOSYS (glibc then
falls back to clone, whose flags can be checked), as in Docker's default profile.

    python3 deploy/seccomp/trace.py            # write seccomp.json from traced.txt
    python3 deploy/seccomp/trace.py --check    # exit 1 if seccomp.json is not what
                                               # the inputs give (offline, a second)
    python3 deploy/seccomp/trace.py --trace [--image notrace:dev] [--base localbase:py312]
                                    [--corpus DIR] [--limit N]
                                               # trace the real image (built when missing),
                                               # write traced.txt and seccomp.json (needs a
                                               # Docker engine and nsenter; a few minutes)

Runs on the host, never in the service.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROFILE = ROOT / "seccomp.json"
TRACED = HERE / "traced.txt"
WORKLOAD = HERE / "workload.py"
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"

#: Docker's default profile allows about this many calls unconditionally (moby's
#: profiles/seccomp/default.json); ours must stay markedly smaller.
DOCKER_DEFAULT_ALLOWED = 360

EPERM, ENOSYS = 1, 38
#: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (Docker's mask: 2114060288).
CLONE_NEW_MASK = 0x7E020000

#: Calls the sandbox needs inside the container: they must be in the profile.
REQUIRED = ("seccomp", "prctl", "landlock_create_ruleset", "landlock_add_rule",
            "landlock_restrict_self", "memfd_create", "clone")

#: Allowed although a given run may not show them. Each line says why.
MARGIN: dict[str, str] = {
    # runc loads the profile just before it execs the entry point (no_new_privs), so its
    # own last steps run under it; they happen before any tracer can see them.
    "execve": "runc execs the entry point (and `docker exec` commands) under the profile",
    "epoll_pwait": "runc (Go runtime) and aarch64 glibc, which has no epoll_wait",
    "nanosleep": "Go runtime in runc between loading the profile and exec",
    "sched_yield": "Go runtime in runc; glibc spin locks",
    "sigaltstack": "Go runtime in runc; CPython's faulthandler",
    "tgkill": "Go runtime in runc; Python's signal.pthread_kill",
    "fstat": "glibc on paths and inputs the trace did not take",
    "newfstatat": "glibc's fstat/stat since 2.33, and Go's os.Stat in runc",
    # Timing-dependent: whether the kernel restarts an interrupted call or a lock is
    # contended depends on the run.
    "restart_syscall": "the kernel restarts an interrupted sleep with it",
    "futex": "contended locks (threads of the server, the executor, the children)",
    "clock_nanosleep": "time.sleep() in the server and the fork server",
    "wait4": "reaping children (os.waitpid)",
    "waitid": "reaping children (os.waitid with pidfds)",
    "pidfd_open": "the fork server watches each child through a pidfd",
    "pidfd_send_signal": "killing a child through its pidfd at its deadline",
    "kill": "killing a child's process group at its deadline",
    "getrandom": "hash seeds and uuid/secrets in every Python process",
    "mremap": "realloc of large buffers (big uploads, big outputs)",
    "madvise": "malloc trimming under memory pressure",
    "rseq": "glibc registers it for each new thread",
    "set_robust_list": "glibc, for each new thread",
    "membarrier": "some libraries' memory barriers (in the children's list too)",
    # aarch64 has only the *at and p* forms of these; x86_64's glibc may use either.
    "ppoll": "aarch64 has no poll",
    "pselect6": "aarch64 has no select",
    "dup3": "aarch64 has no dup2",
    "pipe2": "subprocess pipes; aarch64 has no pipe",
    "faccessat2": "os.access on newer glibc; aarch64 has no access",
    "unlinkat": "removing a file in /tmp (aarch64 has no unlink)",
    "unlink": "removing a file in /tmp",
    # The writable /tmp: libraries may create and remove scratch files there.
    "ftruncate": "tempfile.SpooledTemporaryFile and similar, in /tmp only",
    "fchmod": "tempfile sets 0600 on what it creates in /tmp",
    "statfs": "os.statvfs('/tmp') and glibc's shm checks",
    "fstatfs": "glibc checks the filesystem of /dev/shm and memfds",
}

#: Never allowed, whatever a trace shows: each would widen the wall, and the service
#: needs none of them (namespaces are refused and the sandbox copes without them).
REFUSED: dict[str, str] = {
    "unshare": "new namespaces: the user namespace is the door to most kernel exploits",
    "setns": "joining other namespaces",
    "clone3": "flags cannot be checked (in memory): answered ENOSYS, glibc uses clone",
    "mount": "filesystem changes", "umount2": "filesystem changes",
    "pivot_root": "filesystem changes", "chroot": "filesystem changes",
    "fsopen": "new mount API", "fsmount": "new mount API", "fsconfig": "new mount API",
    "fspick": "new mount API", "move_mount": "new mount API", "open_tree": "new mount API",
    "mount_setattr": "new mount API",
    "keyctl": "kernel keyrings (not namespaced)", "add_key": "kernel keyrings",
    "request_key": "kernel keyrings",
    "io_uring_setup": "io_uring: bypasses seccomp for the calls it makes",
    "io_uring_enter": "io_uring", "io_uring_register": "io_uring",
    "bpf": "eBPF programs", "perf_event_open": "performance counters (side channels)",
    "userfaultfd": "a classic exploit primitive",
    "ptrace": "inspecting other processes", "process_vm_readv": "reading other processes",
    "process_vm_writev": "writing other processes", "kcmp": "comparing other processes",
    "pidfd_getfd": "stealing file descriptors of other processes",
    "open_by_handle_at": "escapes a mount namespace (shocker)",
    "name_to_handle_at": "pairs with open_by_handle_at",
    "init_module": "kernel modules", "finit_module": "kernel modules",
    "delete_module": "kernel modules", "kexec_load": "replacing the kernel",
    "kexec_file_load": "replacing the kernel", "reboot": "rebooting",
    "swapon": "swap: pages of documents could reach a disk", "swapoff": "swap",
    "acct": "process accounting writes a file", "syslog": "kernel log",
    "quotactl": "disk quotas", "lookup_dcookie": "profiling",
    "settimeofday": "the host's clock", "clock_settime": "the host's clock",
    "clock_adjtime": "the host's clock", "adjtimex": "the host's clock",
    "sethostname": "host identity", "setdomainname": "host identity",
    "iopl": "raw I/O ports", "ioperm": "raw I/O ports", "vhangup": "terminals",
    "personality": "changes the ABI (READ_IMPLIES_EXEC and the like)",
    "mbind": "NUMA policy", "set_mempolicy": "NUMA policy", "move_pages": "NUMA",
    "migrate_pages": "NUMA", "modify_ldt": "x86 segment tricks",
    "uselib": "obsolete", "ustat": "obsolete", "sysfs": "obsolete", "_sysctl": "obsolete",
}

PROFILE_ARCHES = ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64")   # no 32-bit ABIs at all


# ---- generating and checking ----

def child_names() -> tuple[str, ...]:
    """The sandbox children's allow-list, from the lead's sandbox/layers/seccomp.py."""
    sys.path.insert(0, str(ROOT))
    try:
        from sandbox.layers.seccomp import names
    except ImportError as exc:
        raise SystemExit(f"trace.py: cannot import sandbox.layers.seccomp.names: {exc}")
    finally:
        sys.path.remove(str(ROOT))
    return tuple(names())


def read_traced(path: pathlib.Path = TRACED) -> tuple[str, ...]:
    if not path.exists():
        raise SystemExit(f"trace.py: {path} is missing: run with --trace first")
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return tuple(names)


def allowed_names(traced, child) -> tuple[list[str], list[str]]:
    """(allowed, dropped): the union minus REFUSED; `dropped` names traced but refused."""
    wanted = set(traced) | set(child) | set(MARGIN) | set(REQUIRED)
    dropped = sorted(wanted & set(REFUSED))
    allowed = sorted(wanted - set(REFUSED) - {"clone"})
    return allowed, dropped


def build_profile(traced, child) -> dict:
    allowed, _ = allowed_names(traced, child)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [{"architecture": arch, "subArchitectures": []} for arch in PROFILE_ARCHES],
        "syscalls": [
            {"names": allowed, "action": "SCMP_ACT_ALLOW",
             "comment": "traced from the real service (deploy/seccomp/traced.txt), the "
                        "sandbox children's list and a documented margin: "
                        "regenerate with deploy/seccomp/trace.py"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NEW_MASK, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}],
             "comment": "processes and threads, never with a new namespace"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
             "comment": "ENOSYS makes glibc fall back to clone, whose flags are checked"},
        ],
    }


def render(profile: dict) -> str:
    return json.dumps(profile, indent=2) + "\n"


def count(profile: dict) -> int:
    """Calls the profile lets run (with some arguments)."""
    return len({n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
                for n in rule["names"]})


def generate() -> int:
    traced, child = read_traced(), child_names()
    _, dropped = allowed_names(traced, child)
    profile = build_profile(traced, child)
    PROFILE.write_text(render(profile))
    if dropped:
        print(f"trace.py: refused although traced or listed: {', '.join(dropped)}")
    print(f"trace.py: wrote {PROFILE.relative_to(ROOT)}: {count(profile)} calls allowed "
          f"(Docker's default: about {DOCKER_DEFAULT_ALLOWED})")
    return 0


def check() -> int:
    """0 when seccomp.json is exactly what the committed inputs give, and sound."""
    traced, child = read_traced(), child_names()
    expected = render(build_profile(traced, child))
    problems = []
    actual = PROFILE.read_text() if PROFILE.exists() else ""
    if actual != expected:
        try:
            have = {n for r in json.loads(actual)["syscalls"] for n in r["names"]}
        except (ValueError, KeyError, TypeError):
            have = set()
        want = {n for r in json.loads(expected)["syscalls"] for n in r["names"]}
        problems.append("seccomp.json differs from what trace.py generates "
                        f"(missing: {sorted(want - have)}, extra: {sorted(have - want)}); "
                        "run python3 deploy/seccomp/trace.py")
    profile = json.loads(expected)
    allowed = {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
               for n in r["names"]}
    if missing := sorted(set(REQUIRED) - allowed):
        problems.append(f"the sandbox needs {missing}")
    if missing := sorted(set(child) - allowed - set(REFUSED)):
        problems.append(f"calls the children may make are refused: {missing}")
    if widened := sorted(allowed & set(REFUSED)):
        problems.append(f"refused calls are allowed: {widened}")
    n = count(profile)
    print(f"trace.py: seccomp.json allows {n} calls (Docker's default: about "
          f"{DOCKER_DEFAULT_ALLOWED}); {len(traced)} traced, {len(child)} for children, "
          f"{len(MARGIN)} margin, {len(REFUSED)} always refused")
    for p in problems:
        print(f"trace.py: CHECK FAILED: {p}", file=sys.stderr)
    return 1 if problems else 0


# ---- tracing the real image ----

TRACE_DOCKERFILE = """\
FROM {image}
USER root
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace \\
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
"""

#: Same hardening as docker-compose.yml, but tracing needs ptrace: the trace profile allows
#: everything except REFUSED (minus what strace itself needs), so the service meets the
#: same refusals (no unshare, no clone3, ...) as under the final profile.
STRACE_NEEDS = {"ptrace", "process_vm_readv", "process_vm_writev"}
HEALTHCHECK = ("import sys, urllib.request as u; sys.exit(0 if u.urlopen("
               "'http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)")


#: Run inside the trace container: SIGTERM to the server (not to strace or sh).
SIGTERM_SERVER = """
import os, signal
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    # python3 /opt/notrace/bin/notrace serve ...
    if len(cmd) > 2 and cmd[1].endswith(b"/notrace") and cmd[2] == b"serve":
        os.kill(int(p), signal.SIGTERM)
"""


def trace_profile() -> dict:
    refused = sorted(set(REFUSED) - STRACE_NEEDS - {"clone3"})
    flags = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": a, "subArchitectures": []} for a in PROFILE_ARCHES],
        "syscalls": [
            {"names": refused, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        ] + [
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
             "args": [{"index": 0, "value": f, "valueTwo": f, "op": "SCMP_CMP_MASKED_EQ"}]}
            for f in flags
        ],
    }


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float = 600,
           input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, text=True, input=input,
                          capture_output=capture, timeout=timeout)


def parse_summary(text: str) -> set[str]:
    """Names from an `strace -c` table (last column), without the total line."""
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and re.fullmatch(r"[a-z_][a-z0-9_]*", fields[-1]) \
                and fields[-1] != "total" and re.fullmatch(r"[\d.]+", fields[0]):
            names.add(fields[-1])
    return names


def trace(image: str, base: str, corpus: pathlib.Path | None, limit: int) -> int:
    if not shutil.which("docker") or docker("info", check=False).returncode != 0:
        raise SystemExit("trace.py: no Docker engine answers (run .ci/provision-docker)")
    if docker("image", "inspect", image, check=False).returncode != 0:
        print(f"trace.py: building {image} from {ROOT} (BASE={base})")
        docker("build", "--network", "host", "--force-rm", "-q", "--build-arg",
               f"BASE={base}", "-t", image, str(ROOT))
    tag = f"notrace-trace:{os.getpid()}"
    name = f"notrace-trace-{os.getpid()}"
    print(f"trace.py: building {tag} (the image plus strace)")
    docker("build", "--network", "host", "--force-rm", "-q", "-t", tag, "-",
           input=TRACE_DOCKERFILE.format(image=image))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(trace_profile(), f)
        trace_profile_path = f.name
    env = {"NOTRACE_WORKERS": "2", "NOTRACE_CHILD_MEMORY_MB": "384"}
    try:
        docker("run", "-d", "--name", name, "--read-only",
               "--tmpfs", "/tmp:size=64m,mode=1777,noexec,nosuid,nodev",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
               "--security-opt", f"seccomp={trace_profile_path}",
               "--network", "none", "--memory", "1g", "--memory-swap", "1g",
               "--pids-limit", "256", "--user", "10001:10001",
               *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
               "--entrypoint", "sh", tag, "-c",
               # strace writes its table when the service exits; sh then keeps the
               # container up so the table can be read from its tmpfs.
               'strace -f -qq -c -o /tmp/trace.server "$@"; echo STRACE-DONE; exec sleep 300',
               "sh", "notrace", "serve", "--host", "0.0.0.0", "--port", "8000")
        pid = docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        drive = ["nsenter", "-t", pid, "-n", sys.executable, str(WORKLOAD),
                 "--base", "http://127.0.0.1:8000"]
        print("trace.py: waiting for /health, then driving the workload")
        subprocess.run(drive + ["wait"], check=True, capture_output=True, timeout=90)
        args = ["trace"] + (["--corpus", str(corpus), "--limit", str(limit)] if corpus else [])
        print(f"trace.py: workload: operations, then {corpus or 'no corpus'} "
              f"({limit or 'all'} files)")
        out = subprocess.run(drive + args, check=True, capture_output=True, text=True,
                             timeout=600).stdout
        print(f"trace.py: workload: {out.strip()[:400]}")
        files = json.loads(out).get("files", 0)
        docker("exec", name, "strace", "-f", "-qq", "-c", "-o", "/tmp/trace.health",
               "python3", "-c", HEALTHCHECK)
        # Stop the service the way Docker does (SIGTERM), so shutdown is traced too.
        docker("exec", name, "python3", "-c", SIGTERM_SERVER)
        deadline = time.monotonic() + 60
        while "STRACE-DONE" not in docker("logs", name, check=False).stdout:
            if time.monotonic() > deadline:
                raise SystemExit("trace.py: the service did not exit within 60 s of SIGTERM")
            time.sleep(1)
        strace_version = docker("exec", name, "strace", "-V").stdout.splitlines()[0]
        names = set()
        for table in ("/tmp/trace.server", "/tmp/trace.health"):
            names |= parse_summary(docker("exec", name, "cat", table).stdout)
    finally:
        docker("rm", "-f", name, check=False)
        docker("rmi", "-f", tag, check=False)
        os.unlink(trace_profile_path)
    if len(names) < 30:
        raise SystemExit(f"trace.py: only {len(names)} calls traced: the trace failed")
    header = [
        "# System calls the real notrace service made under strace -f while",
        "# deploy/seccomp/workload.py ran through it (every endpoint and operation, then",
        f"# {files} corpus files through info, text and repair), plus its HEALTHCHECK.",
        "# Generated by deploy/seccomp/trace.py --trace; seccomp.json derives from it.",
        f"# image {image}, {platform.machine()}, kernel {platform.release()}, "
        f"{datetime.date.today().isoformat()}, {strace_version}",
    ]
    TRACED.write_text("\n".join(header + sorted(names)) + "\n")
    print(f"trace.py: wrote {TRACED.relative_to(ROOT)}: {len(names)} calls")
    return generate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="verify seccomp.json against the committed inputs")
    mode.add_argument("--trace", action="store_true",
                      help="trace the real image first (needs a Docker engine)")
    parser.add_argument("--image", default="notrace:latest",
                        help="image to trace (built from the repo when missing)")
    parser.add_argument("--base", default="python:3.12-slim",
                        help="BASE for that build (here: localbase:py312)")
    parser.add_argument("--corpus", type=pathlib.Path,
                        default=DEFAULT_CORPUS if DEFAULT_CORPUS.is_dir() else None)
    parser.add_argument("--limit", type=int, default=0, help="corpus files to run (0: all)")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if args.trace:
        return trace(args.image, args.base, args.corpus, args.limit)
    return generate()


if __name__ == "__main__":
    sys.exit(main())
