"""Runs operations in a SEPARATE process, emulating the child's confinement, for the
corpus and confinement tests. Not a test module: run as `python worker.py CONFIG_JSON`.

After importing notrace.operations.child and calling warm_up() (what the fork server
does), it forbids, like Landlock would: importing any module that exists on disk but is
not loaded yet, and opening any file but /dev/urandom (Python-level opens, seen through
an audit hook; qpdf's C++ opens are not visible here). Violations are reported, not
raised, so one run lists them all. RLIMIT_AS bounds memory.

Output: one JSON line per job: {"file", "op", "outcome"} where outcome is "ok", a
problem code, "memory" (MemoryError re-raised, as the sandbox expects) or
"raised:<ExceptionType>" (a failure of the contract); then a final
{"violations": [...]} line. With "reopen" in the config, every PDF of an "ok" answer (each
PDF inside a zip too) is reopened with pikepdf AND pypdf, which must see the same pages
(outside the confinement: that is the client's side); a failure is the outcome
"unreadable:<library>:<member>".
"""
from __future__ import annotations

import importlib.abc
import json
import pathlib
import resource
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


#: False while the worker checks answers as a client would (not the child's doing).
_CONFINED = [True]


class _ImportGuard(importlib.abc.MetaPathFinder):
    """Records imports of modules that exist but were not loaded before confinement."""

    def __init__(self, violations: list) -> None:
        self.violations = violations

    def find_spec(self, name, path, target=None):
        if not _CONFINED[0]:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                self.violations.append(f"import {name}")
                raise ImportError(f"confined: import of {name}")
        return None  # does not exist: the ordinary ModuleNotFoundError follows


def _reopen(media_type: str, body, password: str | None) -> str:
    """"ok" when every PDF of the answer opens with pikepdf and pypdf, with the same
    number of pages (at least one), else "unreadable:<library>:<member>"."""
    import io
    import zipfile

    import pikepdf
    import pypdf

    if media_type == "application/zip":
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            parts = [(name, zf.read(name)) for name in zf.namelist()]
    else:
        parts = [("body", bytes(body))]
    for name, data in parts:
        if not data.startswith(b"%PDF-"):
            continue  # an image of `images`, JSON
        try:
            with pikepdf.open(io.BytesIO(data), password=password or "") as pdf:
                pages = len(pdf.pages)
        except Exception:  # noqa: BLE001  reported, the parent asserts on it
            return f"unreadable:pikepdf:{name}"
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                reader.decrypt(password or "")
            same = len(reader.pages) == pages >= 1
        except Exception:  # noqa: BLE001
            return f"unreadable:pypdf:{name}"
        if not same:
            return f"unreadable:pages:{name}"
    return "ok"


def _job(op: str, raw: dict, max_pages: int) -> tuple[dict, str | None]:
    """(the params run() receives, the password that opens its answer), validated as the
    server does: an operation's raw texts, or a pipeline's {"steps": JSON text}."""
    if op == "pipeline":
        from notrace.pipeline import parse
        job = parse(raw["steps"], 1).job_params(max_pages)
        return job, job["steps"][-1]["params"].get("password")
    from notrace.operations import OPERATIONS
    params = OPERATIONS[op].validate(raw)
    return {"operation": op, "params": params, "max_pages": max_pages}, params.get("password")


def main() -> None:
    config = json.loads(sys.argv[1])
    limit = config.get("memory_mb", 1536) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from notrace.operations.child import run, warm_up

    warm_up()
    # Either every file through every op, or explicit jobs {"files": [...], "op", "raw"}.
    jobs = [([f] * (2 if op in ("merge", "overlay", "attach") else 1), op, raw)
            for f in config.get("files", ())
            for op, raw in config.get("ops", {}).items()]
    jobs += [(j["files"], j["op"], j.get("raw", {})) for j in config.get("jobs", ())]
    # Read and validate everything before confining.
    inputs = {f: memoryview(pathlib.Path(f).read_bytes()) for j in jobs for f in j[0]}
    jobs = [(files, op, _job(op, raw, config.get("max_pages", 1000)))
            for files, op, raw in jobs]
    violations: list[str] = []
    if config.get("confine", True):
        sys.meta_path.insert(0, _ImportGuard(violations))

        def audit(event, args):
            if _CONFINED[0] and event == "open" and args and str(args[0]) != "/dev/urandom":
                violations.append(f"open {args[0]}")
                raise PermissionError("confined: open")
        sys.addaudithook(audit)
    for files, op, (job, password) in jobs:
        name = pathlib.Path(files[0]).name
        print(json.dumps({"start": name, "op": op}), flush=True)
        try:
            answer = run([inputs[f] for f in files], job)
            manifest = json.loads(answer[0])
            outcome = manifest.get("problem", "ok")
            if outcome == "ok" and config.get("reopen"):
                _CONFINED[0] = False
                try:
                    outcome = _reopen(manifest["media_type"], answer[1], password)
                finally:
                    _CONFINED[0] = True
        except MemoryError:
            outcome = "memory"
        except BaseException as exc:  # noqa: BLE001  reported, the parent asserts on it
            outcome = f"raised:{type(exc).__name__}"
        print(json.dumps({"file": name, "op": op, "outcome": outcome}), flush=True)
    print(json.dumps({"violations": sorted(set(violations))}), flush=True)


if __name__ == "__main__":
    main()
