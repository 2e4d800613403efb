"""Where `notrace run` writes its answer. Runs in the CLI's main process.

  no -o, or -o -   standard output; an answer that is not JSON (a PDF, a zip) is refused
                   when standard output is a terminal: give -o or redirect it
  -o DIR/          (a trailing slash, or an existing directory) the answer's own download
                   name inside DIR: document.pdf, split.zip, images.zip..., OPERATION.json
                   for JSON; a file of that name already there is not replaced
  -o FILE          FILE, created or replaced

Everything that can be checked before the job runs is (the directory exists, is one and
is writable; FILE is not a directory), so a mistake costs no job and leaves an existing
FILE untouched. A write that fails half-way removes the partial file. Every failure is an
OutputError: one line, no traceback.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import BinaryIO, Iterable

__all__ = ["OutputError", "Target", "binary_answer", "plan", "write"]

STDOUT = "-"
_JSON = "application/json"


class OutputError(Exception):
    """The answer cannot be written where asked (a usage error)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """stdout, a directory (the name comes from the answer) or a file path."""

    kind: str          # "stdout" | "dir" | "file"
    path: str | None = None


def _writable_dir(path: str, shown: str) -> None:
    path = path.rstrip("/") or "/"
    if not os.path.exists(path):
        raise OutputError(f"cannot write to {shown}: no such directory {path}")
    if not os.path.isdir(path):
        raise OutputError(f"cannot write to {shown}: {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {shown}: the directory {path} is not writable")


_TO_A_TERMINAL = ("the answer is binary (a PDF or a zip) and standard output is a terminal: "
                  "give -o FILE or -o DIR/, or redirect it (> FILE)")


def binary_answer(output_kind: str) -> bool | None:
    """Whether an operation of that output kind answers something other than JSON (None:
    it depends on its parameters, known once it has answered)."""
    return {"json": False, "json_or_archive": None}.get(output_kind, True)


def plan(output: str | None, *, binary: bool | None, stdout: BinaryIO | None = None) -> Target:
    """The Target for `-o OUTPUT` (None: absent), checked before any work. `binary`: the
    operation answers something other than JSON (None: not known yet; `write` checks)."""
    if output is None or output == STDOUT:
        stream = stdout if stdout is not None else sys.stdout
        if binary and stream.isatty():
            raise OutputError(_TO_A_TERMINAL)
        return Target("stdout")
    if output == "":
        raise OutputError("-o needs a file or directory name ('-' for standard output)")
    if output.endswith("/") or os.path.isdir(output):
        _writable_dir(output, output)
        return Target("dir", output)
    parent = os.path.dirname(output) or "."
    _writable_dir(parent, output)
    if os.path.exists(output) and not os.access(output, os.W_OK):
        raise OutputError(f"cannot write to {output}: it is not writable")
    return Target("file", output)


def name_in_dir(operation: str, media_type: str, filename: str | None) -> str:
    """The answer's download name (the manifest's, checked as SAFE_FILENAME by jobs.py);
    JSON answers have none: OPERATION.json."""
    if filename is None or media_type == _JSON:
        return f"{operation}.json"
    return filename


def write(target: Target, chunks: Iterable[bytes], *, operation: str, media_type: str,
          filename: str | None, stdout: BinaryIO | None = None) -> str:
    """Write the answer's chunks to `target`; returns where they went ('-' or a path)."""
    if target.kind == "stdout":
        stream = stdout if stdout is not None else sys.stdout.buffer
        if media_type != _JSON and stream.isatty():
            raise OutputError(_TO_A_TERMINAL)
        try:
            for chunk in chunks:
                stream.write(chunk)
            if media_type == _JSON and stream.isatty():  # the prompt on a line of its own
                stream.write(b"\n")
            stream.flush()
        except BrokenPipeError:
            raise OutputError("standard output was closed before the answer was written") \
                from None
        except OSError as exc:
            raise OutputError(f"cannot write to standard output: {exc.strerror}") from None
        return STDOUT
    if target.kind == "dir":
        path = os.path.join(target.path, name_in_dir(operation, media_type, filename))
        mode = "xb"  # never replace a file the user did not name
    else:
        path, mode = target.path, "wb"
    try:
        f = open(path, mode)
    except FileExistsError:
        raise OutputError(f"{path} already exists: give -o {path} to replace it") from None
    except OSError as exc:
        raise OutputError(f"cannot write to {path}: {exc.strerror}") from None
    try:
        with f:
            for chunk in chunks:
                f.write(chunk)
    except OSError as exc:
        _remove(path)
        raise OutputError(f"cannot write to {path}: {exc.strerror} (the partial file is "
                          "removed)") from None
    except BaseException:
        _remove(path)
        raise
    return path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
