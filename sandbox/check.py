"""`python -m sandbox check`: which isolation layers this host gives, and proof they hold.

Runs in the caller's process (a command-line tool). Exit status 0 when every layer that is
promised (required by the policy, or applied on this host) withstood its escape attempt.
"""
from __future__ import annotations

import argparse
import sys

from sandbox.limits import Limits
from sandbox.policy import Policy
from sandbox.runner import Sandbox, SandboxError
from sandbox.selftest import judge

_CHECK_LIMITS = Limits(memory_mb=128, cpu_s=5, wall_s=10, output_mb=1)


def run_check(policy: Policy | None = None, out=sys.stdout) -> int:
    policy = policy or Policy()
    sandbox = Sandbox("sandbox.selftest:attempt", limits=_CHECK_LIMITS, workers=1, queue=4,
                      policy=policy)
    try:
        with sandbox:
            sandbox.run_sync([], {"layer": "privileges"})       # start it
            layers = sandbox.layers()
            print("isolation layers on this host:", file=out)
            for status in layers:
                mark = "active " if status.available else "MISSING"
                print(f"  {mark}  {status.name:<11} {status.detail}", file=out)
            print("self-test (one escape attempt per layer):", file=out)
            failed = 0
            for status in layers:
                promised = status.available or policy.required(status.name)
                if not promised:
                    print(f"  skip     {status.name:<11} not available here", file=out)
                    continue
                result = sandbox.run_sync([], {"layer": status.name, "bytes": 2 * (
                    _CHECK_LIMITS.memory_mb << 20)})
                held, seen = judge(status.name, result,
                                   memory_bytes=2 * (_CHECK_LIMITS.memory_mb << 20))
                failed += not held
                print(f"  {'held   ' if held else 'FAILED '}  {status.name:<11} {seen}", file=out)
    except SandboxError as exc:
        print(f"the sandbox cannot start here: {exc}", file=out)
        return 2
    print("all promised layers held" if not failed else f"{failed} layer(s) FAILED", file=out)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("command", choices=["check"], help="check: list layers and self-test")
    parser.parse_args(argv)
    return run_check()
