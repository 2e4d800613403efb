"""Coverage-guided fuzzing of the in-child operation code with atheris (libFuzzer).

    python fuzz/atheris_harness.py [--confine] [libFuzzer options] [CORPUS_DIR ...]
    e.g. python fuzz/atheris_harness.py -max_total_time=60 /tmp/notrace-atheris /work/shared/corpus

Runs in its own process, which plays the part of a sandbox child for its whole life: it
imports `notrace.operations.child` (instrumented, with pypdf and pikepdf's Python code),
runs `warm_up()` as the fork server does, then takes the limits of a child:
RLIMIT_AS = warm baseline + fuzz_limits().memory_mb (sandbox.layers.rlimits, the function
a child applies to its job), libFuzzer's per-input -timeout = the wall limit and
-rss_limit_mb to match. With --confine it applies every isolation layer of a child
(`sandbox.layers.confine`: privileges, rlimits, Landlock, seccomp) before the first
input; Landlock then lets it read only the seed files named on the command line
(listed beforehand), so libFuzzer can neither write a corpus nor crash artifacts: the
harness prints a crashing input itself (base64, on stderr) before it fails.

Each input: byte 0 picks an operation that takes a PDF (from the registry), the rest is
the PDF. `child.run` must return a manifest (a result or a problem); MemoryError is
documented (the sandbox reports "memory"). Anything else it raises is a crash: our bug.
atheris is optional and not a test dependency: `pip install atheris` (3.0.0 has a
cp311 manylinux wheel).
"""
from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import os
import sys
import time
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["notrace", "pypdf", "pikepdf"]):
    from notrace.operations import child

from notrace.operations.registry import OPERATIONS  # noqa: E402

from fuzz.properties import MAX_PAGES, fuzz_limits  # noqa: E402
from fuzz.regressions import minimal_params, pdf_operations  # noqa: E402

_MIB = 1 << 20
OPERATION_NAMES = pdf_operations()
#: name -> validated params, computed before any limit applies.
PARAMS = {name: OPERATIONS[name].validate(minimal_params(name)) for name in OPERATION_NAMES}


def test_one_input(data: bytes) -> None:
    """One input through one operation's in-child code, as a child would run it."""
    if not data:
        return
    name = OPERATION_NAMES[data[0] % len(OPERATION_NAMES)]
    try:
        answer = child.run([memoryview(data[1:])], {"operation": name, "params": PARAMS[name],
                                                    "max_pages": MAX_PAGES})
    except MemoryError:  # documented: the sandbox classifies the job as "memory"
        return
    except BaseException:
        if len(data) <= 64 * 1024:
            sys.stderr.write(f"\ncrashing input ({name}, {len(data)} bytes), base64:\n"
                             f"{base64.b64encode(data).decode()}\n")
        raise
    manifest = json.loads(answer[0])
    assert "problem" in manifest or "files" in manifest, f"{name}: manifest without files or problem"


def _seed_files(args: list[str]) -> list[str]:
    files = []
    for arg in args:
        if not arg.startswith("-") and Path(arg).is_dir():
            files.extend(str(p) for p in sorted(Path(arg).iterdir()) if p.is_file())
    return files


def _apply_child_limits(confine: bool, seed_files: list[str]) -> str:
    from sandbox.layers import ChildContext, confine as confine_layers, probe_all
    from sandbox.layers.rlimits import current_vm_bytes, tighten_for_job
    from sandbox.policy import Policy

    # RLIMIT_CPU counts the whole process, so it bounds the run, not one input (that is
    # libFuzzer's -timeout): NOTRACE_ATHERIS_CPU_S, default one hour.
    budget_s = int(os.environ.get("NOTRACE_ATHERIS_CPU_S", "3600"))
    limits = dataclasses.replace(fuzz_limits(), cpu_s=budget_s)
    baseline = current_vm_bytes()
    summary = f"RLIMIT_AS = baseline {baseline // _MIB} MB + {limits.memory_mb} MB, RLIMIT_CPU {budget_s} s"
    if not confine:  # only what a job gets
        tighten_for_job(limits, baseline)
        return summary
    # libFuzzer arms setitimer, which the child's seccomp filter refuses (SIGSYS): every
    # layer but seccomp, by the policy's explicit opt-in.
    policy = Policy(readable_files=(*Policy().readable_files, *seed_files),
                    allow_missing_layers=frozenset({"seccomp"}))
    available = {status.name: status.available and status.name != "seccomp" for status in probe_all()}
    ctx = ChildContext(policy=policy, limits=limits, baseline_vm_bytes=baseline,
                       keep_fds=(0, 1, 2), was_root=os.geteuid() == 0)
    confine_layers(ctx, available)
    return f"confined like a child ({', '.join(ctx.applied)}), {summary}"


def main() -> None:
    argv = [a for a in sys.argv if a != "--confine"]
    confine = len(argv) != len(sys.argv)
    limits = fuzz_limits()
    started = time.monotonic()
    child.warm_up()
    warm_s = time.monotonic() - started
    timeout_s = int(limits.wall_s)
    own = [f"-timeout={timeout_s}", f"-rss_limit_mb={2 * limits.memory_mb + 512}", "-max_len=65536"]
    seeds: list[str] = []
    if confine:  # Landlock grants the seed files, not their directories: name them one by one
        seeds = _seed_files(argv[1:])
        argv = [argv[0], *(a for a in argv[1:] if a.startswith("-")),
                *([f"-seed_inputs={','.join(seeds)}"] if seeds else [])]
    argv = [argv[0], *own, *argv[1:]]
    atheris.Setup(argv, test_one_input)
    # Fuzz() imports libFuzzer's core lazily: import it now, before confinement.
    importlib.import_module("atheris.core_with_libfuzzer")
    how = _apply_child_limits(confine, seeds)
    print(f"atheris harness: {len(OPERATION_NAMES)} operations; {how}; warm-up {warm_s:.1f} s",
          file=sys.stderr, flush=True)
    atheris.Fuzz()  # never returns: libFuzzer exits when -max_total_time or -runs is reached


if __name__ == "__main__":
    main()
