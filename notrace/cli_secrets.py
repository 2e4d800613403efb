"""Secret parameters (passwords) on the `notrace run` command line, without showing them.

Runs in the CLI's main process. A value on the command line is readable by every user of
the machine (`ps`, /proc/PID/cmdline), so every parameter its declaration marks `secret`
gets four ways in, generated here from the declaration (never written per operation):

  --NAME VALUE        accepted; for a password, with a warning on stderr that others can
                      read it (a pipeline's --steps may hold passwords too: no warning)
  --NAME -            read from standard input (its first line); from a terminal, a prompt
                      that does not echo
  --NAME-file FILE    the first line of FILE
  --NAME-env VAR      the value of the environment variable VAR

Without any of them, `password` comes from NOTRACE_PASSWORD when that is set (the CLI's
only; notrace.settings reads its own names only, so the server neither takes nor logs it).
At most one of them per parameter, and standard input for one parameter only. The value
ends up where the plain flag puts it (`param:NAME`), so validation is the HTTP service's.
A trailing newline (LF or CRLF) is not part of the value; an empty value is the
parameter's own error (Param.parse).
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Iterable, TextIO

from notrace.operations.spec import Param

__all__ = ["SecretError", "add_secret_flags", "resolve_secrets", "flag_of", "PASSWORD_ENV",
           "ask"]

STDIN = "-"
PASSWORD_ENV = "NOTRACE_PASSWORD"  # the default source of `password`
_MAX_LINE = 64 * 1024  # far beyond any password (127 characters): a bound only


class SecretError(Exception):
    """A secret could not be read (a usage error; the message never holds the secret)."""


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_secret_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, param: Param,
                     help_text: str) -> None:
    """The plain flag (`dest="param:NAME"`, as every parameter) and its -file and -env twins."""
    flag = flag_of(param.name)
    parser.add_argument(flag, dest=f"param:{param.name}", metavar="VALUE|-", default=None,
                        help=f"{help_text} '-' reads it from standard input (a prompt on a "
                             "terminal); a VALUE here is visible to other users (ps): "
                             f"prefer {flag}-file or {flag}-env.")
    parser.add_argument(f"{flag}-file", dest=f"secret_file:{param.name}", metavar="FILE",
                        default=None, help=f"Read {param.name} from the first line of FILE.")
    parser.add_argument(f"{flag}-env", dest=f"secret_env:{param.name}", metavar="VAR",
                        default=None,
                        help=f"Read {param.name} from the environment variable VAR.")


def resolve_secrets(args: argparse.Namespace, params: Iterable[Param], *,
                    stdin: TextIO | None = None, warn: TextIO | None = None) -> None:
    """Replace each secret's -file/-env/'-' source by its value in `param:NAME`; warn on
    stderr for a value given on the command line. Raises SecretError."""
    stdin = stdin if stdin is not None else sys.stdin
    warn = warn if warn is not None else sys.stderr
    from_stdin: str | None = None
    for param in params:
        if not param.secret:
            continue
        flag = flag_of(param.name)
        value = getattr(args, f"param:{param.name}", None)
        path = getattr(args, f"secret_file:{param.name}", None)
        var = getattr(args, f"secret_env:{param.name}", None)
        given = [v for v in (value, path, var) if v is not None]
        if len(given) > 1:
            raise SecretError(f"give {param.name} one way only: {flag}, {flag}-file or "
                              f"{flag}-env")
        if not given and param.name == "password" and PASSWORD_ENV in os.environ:
            value = os.environ[PASSWORD_ENV]
        elif path is not None:
            value = _first_line_of_file(path, flag)
        elif var is not None:
            if var not in os.environ:
                raise SecretError(f"{flag}-env: the environment variable {var} is not set")
            value = os.environ[var]
        elif value == STDIN:
            if from_stdin is not None:
                raise SecretError(f"standard input is already read for {from_stdin}: give "
                                  f"{flag} another way ({flag}-file or {flag}-env)")
            from_stdin = param.name
            value = _from_stdin(stdin, param.name, flag)
        elif value is not None and param.kind == "password":
            print(f"notrace: warning: {flag} on the command line is visible to other users "
                  f"of this machine (ps, /proc); use {flag}-file FILE, {flag}-env VAR or "
                  f"{flag} - (standard input)", file=warn)
        if value is not None:
            setattr(args, f"param:{param.name}", value)


def _strip_newline(line: str) -> str:
    return line[:-1].removesuffix("\r") if line.endswith("\n") else line


def _first_line_of_file(path: str, flag: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline(_MAX_LINE)
    except OSError as exc:
        raise SecretError(f"{flag}-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{flag}-file: {path} is not UTF-8 text") from None
    return _strip_newline(line)


def _from_stdin(stdin: TextIO, name: str, flag: str) -> str:
    if stdin is None or stdin.closed:
        raise SecretError(f"{flag} -: there is no standard input")
    if stdin.isatty():
        return ask(name, flag)
    try:
        return _strip_newline(stdin.readline(_MAX_LINE))
    except UnicodeDecodeError:
        raise SecretError(f"{flag} -: standard input is not UTF-8 text") from None


def ask(name: str, flag: str) -> str:
    """Ask the terminal for `name` without echo (getpass: /dev/tty). Raises SecretError."""
    try:
        return getpass.getpass(f"{name}: ")
    except EOFError:
        raise SecretError(f"{flag}: no {name} given") from None
