"""Regression files: every failure the fuzzers found, shrunk, kept forever and replayed.

Runs in the test process or the fuzz driver. A regression is a small JSON sidecar
`<id>.json` beside its input files (`<id>.pdf`, or `<id>-<n>.<ext>` when there are
several), in tests/fuzz/regressions/ by default:

    {"kind": "contract", "operation": "merge", "params": {"pages": "1-2"},
     "inputs": ["3f2a....pdf"], "failure": "what failed", "found_by": "contract, seed 20240601"}
    {"kind": "law", "law": "split_then_merge_keeps_page_count",
     "args": [{"file": "3f2a....pdf"}, 2], "inputs": ["3f2a....pdf"], ...}

`<id>` is the first 16 hex digits of the sha256 of the call (operation or law, params,
inputs), so the same failure found twice is one file. A contract regression is replayed
through the real sandbox with the contract check (fuzz.properties.check_call); a law
regression runs its law again. `seed_attacks()` wrote the first files: one input per attack
class of docs/threats.md, generated with a fixed seed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from hypothesis import HealthCheck, Phase, given, seed, settings

from fuzz.properties import LAWS, Call, ContractBroken, Outcome, Service, check_call
from notrace.operations.registry import OPERATIONS

__all__ = ["DIRECTORY", "Regression", "save_call", "save_failure", "load_all", "replay",
           "attack_examples", "seed_attacks", "minimal_params", "pdf_operations", "SEED", "MAX_SEED_BYTES"]

DIRECTORY = Path(__file__).resolve().parents[1] / "tests" / "fuzz" / "regressions"
#: The fixed seed of the attack inputs kept as regressions and of tests/fuzz/test_attacks.py.
SEED = 20240601
MAX_SEED_BYTES = 64 * 1024
_FAILURE_TEXT_MAX = 2000


@dataclasses.dataclass(frozen=True)
class Regression:
    """One kept failure, as read from its sidecar (paths resolved, inputs loaded)."""

    path: Path                  # the sidecar
    kind: str                   # "contract" or "law"
    failure: str
    found_by: str
    call: Call | None = None    # kind "contract"
    law: str | None = None      # kind "law"
    args: tuple = ()            # kind "law": the law's arguments after the service

    @property
    def name(self) -> str:
        what = self.call.operation if self.call else self.law
        return f"{self.path.stem}-{what}"


def pdf_operations() -> tuple[str, ...]:
    """Every operation that takes PDFs, from the registry."""
    return tuple(name for name, op in OPERATIONS.items() if "application/pdf" in op.inputs.media_types)


# -- writing ------------------------------------------------------------------------------------

def _extension(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    return "pdf" if b"%PDF" in data[:1024] or not data else "bin"


def _identity(what: str, params: Any, inputs: Sequence[bytes]) -> str:
    digest = hashlib.sha256(json.dumps([what, params], sort_keys=True, default=str).encode())
    for data in inputs:
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def _write(directory: str | Path, identity: str, inputs: Sequence[bytes], record: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for n, data in enumerate(inputs):
        stem = identity if len(inputs) == 1 else f"{identity}-{n}"
        names.append(f"{stem}.{_extension(data)}")
        (directory / names[-1]).write_bytes(data)
    record = {**record, "inputs": names}
    sidecar = directory / f"{identity}.json"
    sidecar.write_text(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=True) + "\n")
    return sidecar


def _failure_text(failure: BaseException | str) -> str:
    text = failure if isinstance(failure, str) else f"{type(failure).__name__}: {failure}"
    return text[:_FAILURE_TEXT_MAX]


def save_call(directory: str | Path, call: Call, failure: BaseException | str, *, found_by: str,
              **extra: Any) -> Path:
    """Keep one call that broke the contract; returns its sidecar."""
    params = dict(call.params)
    identity = _identity(call.operation, params, call.inputs)
    return _write(directory, identity, call.inputs,
                  {"kind": "contract", "operation": call.operation, "params": params,
                   "failure": _failure_text(failure), "found_by": found_by, **extra})


def save_failure(directory: str | Path, prop: str, args: tuple, failure: BaseException, *,
                 found_by: str) -> Path:
    """Keep the shrunk example of a failed property: the one call that broke the
    contract if that is what failed, else the law and its arguments."""
    if isinstance(failure, ContractBroken):
        return save_call(directory, failure.call, failure, found_by=found_by)
    if prop == "contract":  # the check itself raised: keep every call of the batch
        calls = args[0]
        return [save_call(directory, c, failure, found_by=found_by) for c in calls][0]
    inputs: list[bytes] = []
    encoded: list[Any] = []
    for value in args:
        if isinstance(value, (bytes, bytearray)):
            encoded.append({"file": len(inputs)})
            inputs.append(bytes(value))
        elif isinstance(value, list) and all(isinstance(v, (bytes, bytearray)) for v in value):
            encoded.append({"files": list(range(len(inputs), len(inputs) + len(value)))})
            inputs.extend(bytes(v) for v in value)
        elif isinstance(value, Call):  # a law of one call (a_pipeline_of_one_step_is_that_step)
            encoded.append({"call": value.operation, "params": dict(value.params),
                            "call_files": list(range(len(inputs), len(inputs) + len(value.inputs)))})
            inputs.extend(value.inputs)
        else:
            encoded.append(value)
    identity = _identity(prop, encoded, inputs)
    return _write(directory, identity, inputs,
                  {"kind": "law", "law": prop, "args": encoded, "failure": _failure_text(failure),
                   "found_by": found_by})


# -- reading and replaying ----------------------------------------------------------------------

def load_all(directory: str | Path = DIRECTORY) -> list[Regression]:
    """Every regression in the directory, sorted by sidecar name. Raises ValueError on a
    sidecar that is malformed or names a missing input: a broken file must not pass."""
    directory = Path(directory)
    found = []
    for sidecar in sorted(directory.glob("*.json")):
        record = json.loads(sidecar.read_text())
        try:
            inputs = [(directory / name).read_bytes() for name in record["inputs"]]
            kind = record["kind"]
            common = {"path": sidecar, "kind": kind, "failure": record["failure"], "found_by": record["found_by"]}
            if kind == "contract":
                if record["operation"] not in OPERATIONS:
                    raise ValueError(f"unknown operation {record['operation']!r}")
                call = Call(record["operation"], tuple(inputs), tuple(sorted(record["params"].items())))
                found.append(Regression(**common, call=call))
            elif kind == "law":
                if record["law"] not in LAWS:
                    raise ValueError(f"unknown law {record['law']!r}")
                args = tuple(inputs[a["file"]] if isinstance(a, dict) and "file" in a
                             else [inputs[i] for i in a["files"]] if isinstance(a, dict) and "files" in a
                             else Call(a["call"], tuple(inputs[i] for i in a["call_files"]),
                                       tuple(sorted(a["params"].items())))
                             if isinstance(a, dict) and "call" in a
                             else a for a in record["args"])
                found.append(Regression(**common, law=record["law"], args=args))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (KeyError, OSError, TypeError, IndexError) as exc:
            raise ValueError(f"{sidecar.name}: {type(exc).__name__}: {exc}") from exc
    return found


def replay(service: Service, regressions: Sequence[Regression]) -> list[Outcome | None]:
    """Replay regressions (contract ones concurrently, laws one by one); raises the first
    failure, naming its file. Returns each contract regression's outcome (None for laws)."""
    contract = [r for r in regressions if r.kind == "contract"]
    outcomes = dict(zip((r.path for r in contract), service.call_many([r.call for r in contract])))
    for regression in regressions:
        try:
            if regression.kind == "contract":
                check_call(service, regression.call, outcomes[regression.path])
            else:
                LAWS[regression.law](service, *regression.args)
        except AssertionError as exc:
            raise AssertionError(f"{regression.path.name} ({regression.found_by}) fails again: {exc}") from exc
    return [outcomes.get(r.path) for r in regressions]


# -- attack inputs with a fixed seed --------------------------------------------------------------

def attack_examples(kind: str, *, seed_: int = SEED, tries: int = 8, max_size: int = MAX_SEED_BYTES) -> bytes:
    """One input of an attack class, the same on every run: the largest of the first
    `tries` examples Hypothesis generates from `seed_` (the first ones are the simplest)."""
    from fuzz.strategies import attack_pdfs  # noqa: PLC0415

    drawn: list[bytes] = []

    @seed(seed_)
    @settings(max_examples=tries, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(attack_pdfs(kinds=[kind], max_size=max_size))
    def collect(data: bytes) -> None:
        drawn.append(data)

    collect()
    fitting = [d for d in drawn if len(d) < max_size]
    if not fitting:
        raise ValueError(f"attack {kind!r}: no example under {max_size} bytes")
    return max(fitting, key=len)


def seed_attacks(directory: str | Path = DIRECTORY, *, seed_: int = SEED) -> list[Path]:
    """Write one regression per attack class (kept forever, asserted today): each goes to
    one PDF operation, rotating through them so every operation meets some attack."""
    from fuzz.strategies import ATTACK_KINDS  # noqa: PLC0415

    operations = pdf_operations()
    written = []
    for n, kind in enumerate(ATTACK_KINDS):
        operation = operations[n % len(operations)]
        params = minimal_params(operation)
        call = Call(operation, (attack_examples(kind, seed_=seed_),), tuple(sorted(params.items())))
        written.append(save_call(directory, call, f"none: a hostile input kept forever ({kind})",
                                 found_by=f"fuzz.regressions.seed_attacks, seed {seed_}", attack=kind))
    return written


_SIMPLE_VALUES = {"pages": "all", "ranges": "1", "password": "secret", "boolean": "false", "string": "x"}


def minimal_params(operation: str) -> dict[str, str]:
    """Simple valid raw parameters of an operation: its required ones (and the first of a
    one-of or any-of group), each with a plain value for its kind; derived from the registry."""
    from notrace.operations.spec import REQUIRED  # noqa: PLC0415

    op = OPERATIONS[operation]
    raw = {}
    for param in op.params:
        firsts = (op.one_of[:1] + op.any_of[:1])
        if param.default is not REQUIRED and param.name not in firsts:
            continue
        if param.example is not None:
            raw[param.name] = param.example
        elif param.choices:
            raw[param.name] = str(param.choices[0])
        elif param.kind in ("integer", "number"):
            raw[param.name] = str(int(param.minimum) if param.minimum is not None else 1)
        else:
            raw[param.name] = _SIMPLE_VALUES[param.kind]
    op.validate(raw)  # raises ParamError naming the value if the registry outgrew this
    return raw


if __name__ == "__main__":  # python -m fuzz.regressions: (re)write the seeded attack files
    for path in seed_attacks():
        print(path)
