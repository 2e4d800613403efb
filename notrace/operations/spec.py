"""Declarations of operations: inputs, parameters, output kind, child entry point.

Runs in the SERVER (request validation, CLI, catalogue, OpenAPI) and is also imported in
the fork server/child (pure Python, no I/O). An operation is declared once, in
`registry.py`; everything else derives from that declaration.

Typed values produced by `Param.parse` / `Operation.validate` are plain JSON values
(str, int, float, bool, None) so they cross the process boundary whatever the transport:
a page selection is returned as its canonical text and re-parsed (cheaply) in the child.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any, Callable, Mapping

from sandbox.limits import Limits

__all__ = ["REQUIRED", "KINDS", "OUTPUTS", "OUTPUT_MEDIA_TYPES", "SAFE_FILENAME", "INTEGER_RE",
           "NUMBER_RE", "ParamError", "Param", "Inputs", "Operation", "quote"]


class _Required:
    """Sentinel type for "this parameter has no default"."""

    _instance: "_Required | None" = None

    def __new__(cls) -> "_Required":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:  # pickles back to the singleton
        return "REQUIRED"


REQUIRED: Any = _Required()

KINDS = ("string", "integer", "number", "boolean", "enum", "pages", "ranges", "password")
#: Output kind -> the media types a child may answer for it. "archive" is always a zip,
#: even of one part (split, images); "pdf_or_archive" is the pipeline's, which answers
#: what its last step does. The server refuses any other (jobs.BadManifest).
OUTPUT_MEDIA_TYPES = {
    "pdf": ("application/pdf",),
    "archive": ("application/zip",),
    "json": ("application/json",),
    "pdf_or_archive": ("application/pdf", "application/zip"),
    "json_or_archive": ("application/json", "application/zip"),  # JSON, or a zip if asked
    "image": ("image/png", "image/jpeg"),  # one image (thumbnail)
}
OUTPUTS = tuple(OUTPUT_MEDIA_TYPES)
#: A name the child gives a result or a zip member (part-3.pdf, page-2-image-1.png): our
#: own, never a user's; the server refuses a manifest whose download name is not one.
SAFE_FILENAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"

# Text forms accepted; the same patterns go into the JSON Schema so both agree.
INTEGER_RE = r"[+-]?[0-9]{1,15}"
NUMBER_RE = r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")



class ParamError(ValueError):
    """A parameter is wrong. `param` names it; `message` is safe text (never a secret).

    str() is "<param>: <message>", ready for a 400 answer.
    """

    def __init__(self, param: str, message: str) -> None:
        self.param = param if len(param) <= 64 else param[:61] + "..."
        self.message = message
        super().__init__(f"{self.param}: {message}")


def quote(text: str, limit: int = 32) -> str:
    """User text for an error message: truncated, JSON-quoted, ASCII only."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return json.dumps(text, ensure_ascii=True)


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of an operation, as text in, typed value out.

    kind: one of KINDS. "enum" takes `choices` (strings); "integer" may also take
        `choices` (e.g. angles 90/180/270). "pages"/"ranges" use the syntax of pages.py and
        parse to canonical text. "password" is a string that is `secret` (never logged,
        never echoed in errors).
    default: REQUIRED (the sentinel) for required parameters; None means "optional, absent".
    minimum/maximum: inclusive bounds of integer and number values.
    max_length: longest accepted text, in characters, checked before any other parsing.
    pattern: for "string", a regex (Python and ECMA compatible, anchored with ^...$) the
        text must match; it is also the schema's pattern.
    example: a valid raw value (the schema's example; the fuzzers' minimal value).
    """

    name: str
    kind: str
    description: str
    default: Any = REQUIRED
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 1024
    secret: bool = False
    pattern: str | None = None  # strings only: a regex the whole text must match
    example: str | None = None  # a valid raw value, for docs and fuzzers (JSON and patterned
                                # strings need one: no generic value fits them)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "password" and not self.secret:
            object.__setattr__(self, "secret", True)
        if self.kind == "enum" and not self.choices:
            raise ValueError(f"Param {self.name!r}: enum needs choices")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def error(self, message: str) -> ParamError:
        return ParamError(self.name, message)

    def parse(self, raw: str) -> Any:
        """Text from a form part, query string or CLI flag -> typed value (server side)."""
        if not isinstance(raw, str):
            raise self.error("must be text")
        if len(raw) > self.max_length:
            raise self.error(f"is longer than {self.max_length} characters")
        if "\x00" in raw:
            raise self.error("contains a NUL character")
        parser = getattr(self, f"_parse_{self.kind}")
        return parser(raw)

    def _shown(self, raw: str) -> str:
        return "the value" if self.secret else quote(raw)

    def _parse_string(self, raw: str) -> str:
        if self.pattern is not None and re.fullmatch(self.pattern, raw) is None:
            raise self.error(f"{self._shown(raw)} is not in the accepted form")
        return raw

    def _parse_password(self, raw: str) -> str:
        if raw == "":
            raise self.error("must not be empty")
        return raw

    def _numeric_text(self, raw: str, pattern: str, what: str) -> str:
        """`raw` stripped, once it matches `pattern` (the schema's, too)."""
        text = raw.strip()
        if not re.fullmatch(pattern, text):
            raise self.error(f"{self._shown(raw)} is not {what}")
        return text

    def _parse_integer(self, raw: str) -> int:
        value = int(self._numeric_text(raw, INTEGER_RE, "an integer"))
        if self.choices is not None and value not in self.choices:
            raise self.error(f"must be one of {', '.join(str(c) for c in self.choices)}")
        self._check_bounds(value)
        return value

    def _parse_number(self, raw: str) -> float:
        value = float(self._numeric_text(raw, NUMBER_RE, "a number"))
        if not math.isfinite(value):  # cannot happen with the pattern; kept as a guard
            raise self.error("must be finite")
        self._check_bounds(value)
        return value

    def _check_bounds(self, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise self.error(f"must be at least {_fmt(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise self.error(f"must be at most {_fmt(self.maximum)}")

    def _parse_boolean(self, raw: str) -> bool:
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self.error(f"{self._shown(raw)} is not a boolean (true or false)")

    def _parse_enum(self, raw: str) -> str:
        text = raw.strip().lower()
        if text not in self.choices:
            raise self.error(f"{self._shown(raw)} is not one of {', '.join(self.choices)}")
        return text

    def _parse_pages(self, raw: str) -> str:
        return _pages().parse_pages(raw, param=self.name).text

    def _parse_ranges(self, raw: str) -> str:
        return _pages().parse_ranges(raw, param=self.name).text

    def json_schema(self) -> dict:
        """JSON Schema (OpenAPI 3.1) of the TEXT form accepted. `x-notrace-*` keys carry
        the typed meaning (kind, bounds) that a string schema cannot express."""
        schema: dict[str, Any] = {"type": "string", "description": self.description,
                                  "maxLength": self.max_length, "x-notrace-kind": self.kind}
        if self.kind == "integer":
            if self.choices is not None:
                schema["enum"] = [str(c) for c in self.choices]
            else:
                schema["pattern"] = f"^\\s*{INTEGER_RE}\\s*$"
        elif self.kind == "number":
            schema["pattern"] = f"^\\s*{NUMBER_RE}\\s*$"
        elif self.kind == "boolean":
            schema["enum"] = ["true", "false"]
        elif self.kind == "enum":
            schema["enum"] = list(self.choices)
        elif self.kind in ("pages", "ranges"):
            schema["pattern"] = _pages().SELECTION_PATTERN
        elif self.kind == "string" and self.pattern is not None:
            schema["pattern"] = self.pattern
        elif self.kind == "password":
            schema["minLength"] = 1
            schema["format"] = "password"
            schema["writeOnly"] = True
        if self.kind in ("integer", "number"):
            if self.minimum is not None:
                schema["x-notrace-minimum"] = self.minimum
            if self.maximum is not None:
                schema["x-notrace-maximum"] = self.maximum
        if not self.required and self.default is not None:
            schema["default"] = _text_of(self.default)
        if self.example is not None:
            schema["examples"] = [self.example]
        return schema

    def describe(self) -> dict:
        """Catalogue entry (GET /api/v1/operations, CLI help)."""
        out: dict[str, Any] = {"name": self.name, "type": self.kind,
                               "description": self.description, "required": self.required}
        if not self.required:
            out["default"] = self.default
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.kind in ("string", "password"):
            out["max_length"] = self.max_length
        if self.secret:
            out["secret"] = True
        return out


@dataclasses.dataclass(frozen=True)
class Inputs:
    """How many uploaded files an operation takes, and of which media types."""

    min: int = 1
    max: int = 1
    media_types: tuple[str, ...] = ("application/pdf",)

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ValueError("Inputs: need 1 <= min <= max")

    def describe(self) -> dict:
        return {"min": self.min, "max": self.max, "media_types": list(self.media_types)}


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation: what it takes, what it answers, and where it is implemented.

    output: one of OUTPUTS ("archive": split and images answer a zip, even of one part).
    function: "module:function" implementing it in the child (called by child.run).
    one_of: names of optional parameters of which exactly one must be given.
    any_of: names of optional parameters of which at least one must be given (redact:
        boxes, terms or both).
    check: a check across the parsed values that no single Param can make (crop: a box
        with no area, a box given with margins); it raises ParamError and runs last in
        `validate`, in the SERVER. Pure Python, no I/O.
    limits: per-operation tightening of the server's sandbox Limits (None: defaults).
    """

    name: str
    summary: str
    inputs: Inputs
    params: tuple[Param, ...]
    output: str
    function: str
    one_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    check: Callable[[dict], None] | None = None
    limits: Limits | None = None

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"Operation {self.name!r}: unknown output {self.output!r}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"Operation {self.name!r}: duplicate parameter names")
        for name in self.one_of + self.any_of:
            if name not in names or self.param(name).required:
                raise ValueError(f"Operation {self.name!r}: one_of/any_of names {name!r}, "
                                 "which is not an optional parameter")
        object.__setattr__(self, "params", tuple(self.params))

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def validate(self, raw: Mapping[str, str]) -> dict:
        """Parse every parameter, fill defaults; raise ParamError on the first problem.

        Runs in the server (and the CLI); the result is what the child receives.
        """
        known = {p.name: p for p in self.params}
        for name in raw:
            if name not in known:
                raise ParamError(name, "unknown parameter")
        values: dict[str, Any] = {}
        for p in self.params:
            if p.name in raw:
                values[p.name] = p.parse(raw[p.name])
            elif p.required:
                raise ParamError(p.name, "is required")
            else:
                values[p.name] = p.default
        if self.one_of:
            given = [n for n in self.one_of if n in raw]
            if len(given) != 1:
                which = " or ".join(self.one_of)
                raise ParamError(given[-1] if given else self.one_of[0],
                                 f"give exactly one of {which}")
        if self.any_of and not any(n in raw for n in self.any_of):
            raise ParamError(self.any_of[0], f"give at least one of {', '.join(self.any_of)}")
        if self.check is not None:
            self.check(values)
        return values

    def describe(self) -> dict:
        """Catalogue entry (GET /api/v1/operations)."""
        out = {"name": self.name, "summary": self.summary, "inputs": self.inputs.describe(),
               "params": [p.describe() for p in self.params], "output": self.output}
        if self.one_of:
            out["one_of"] = list(self.one_of)
        if self.any_of:
            out["any_of"] = list(self.any_of)
        return out


def _pages():
    """pages.py imports ParamError from here, so it is imported on first use."""
    from notrace.operations import pages
    return pages


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _text_of(value: Any) -> str:
    """Text form of a typed default (for the JSON Schema `default`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _fmt(value)
    return value if isinstance(value, str) else json.dumps(value)
