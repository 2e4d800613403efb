"""The `notrace` command: serve, run one operation, check the isolation.

Runs in the main process of the command. `serve` runs the aiohttp server (SIGTERM or
SIGINT: stop accepting, let in-flight requests finish within NOTRACE_SHUTDOWN_GRACE_S,
close the sandbox, exit 0). `run` pushes local files through the same Sandbox, the same
validation and the same result interpretation as the HTTP service. Flags of `run` are
generated from the operation declarations; settings flags from notrace.settings.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from aiohttp import web

from notrace import auth, hygiene, pipeline, safe, settings as settings_mod
from notrace.admission import raise_nofile_limit
from notrace.cli_output import OutputError, binary_answer, plan as plan_output, \
    write as write_output
from notrace.cli_secrets import PASSWORD_ENV, SecretError, add_secret_flags, ask, \
    resolve_secrets
from notrace.app import make_app, make_sandbox
from notrace.jobs import BadManifest, interpret, job_params
from notrace.logs import configure as configure_logs, logger
from notrace.middleware import answer_protocol_errors_as_problems
from notrace.operations import OPERATIONS, Operation, ParamError
from notrace.problems import HttpProblem
from notrace.uploads import SNIFF_BYTES, check_kind, max_files, wrong_count
from sandbox import MemFile, Result, SandboxError

__all__ = ["main", "build_parser"]

# Exit codes, by kind of failure (the README's table and `notrace --help` list them).
EXIT_OK = 0
EXIT_DOCUMENT = 1       # a 4xx problem: the document's or its parameters' (incl. its limits)
EXIT_USAGE = 2          # also argparse's; an input, password file or output path
EXIT_UNAVAILABLE = 3    # the sandbox could not start, or a 503 problem (busy, restarting)
EXIT_BUG = 4            # our bug: a 500 problem, not the document's fault
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as a shell reports it
EXIT_CODES = ((EXIT_OK, "done"),
              (EXIT_DOCUMENT, "the document's or its parameters' problem (a 4xx problem)"),
              (EXIT_USAGE, "usage: flags, an unreadable input or password, an output "
                           "not writable, binary to a terminal"),
              (EXIT_UNAVAILABLE, "the sandbox could not start, or is busy or restarting "
                                 "(a 503 problem): try again"),
              (EXIT_BUG, "our bug (a 500 problem): not the document's fault"),
              (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"))


def _exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES)


def _run_epilog(takes_password: bool) -> str:
    password = (f"Without any --password flag, the password is {PASSWORD_ENV} when set;\n"
                "else, if the document needs one and standard input is a terminal,\n"
                "it is asked for (no echo).\n" if takes_password else "")
    return (password + "Settings flags (see notrace --help) are accepted too.\n\n"
            + _exit_codes_text())


def _param_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _hidden_settings_parent() -> argparse.ArgumentParser:
    """The settings flags, accepted but left out of an operation's --help (which shows
    that operation's parameters only; `notrace --help` lists the settings). Its own
    actions: parents share action objects, so hiding them here hides nothing elsewhere."""
    parent = argparse.ArgumentParser(add_help=False)
    settings_mod.add_flags(parent)
    for action in parent._actions:
        action.help = argparse.SUPPRESS
    return parent


def _add_run_parsers(run: argparse.ArgumentParser) -> None:
    ops = run.add_subparsers(dest="operation", metavar="OPERATION", required=True)
    parent = _hidden_settings_parent()
    for op in OPERATIONS.values():
        p = ops.add_parser(op.name, help=op.summary, description=op.summary, parents=[parent],
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=_run_epilog(any(p.name == "password" for p in op.params)))
        group = p.add_argument_group(f"parameters of {op.name}")  # apart from the settings
        for param in op.params:
            default = ("" if param.required or param.default is None
                       else f" (default: {param.default})")
            choices = f" One of: {', '.join(map(str, param.choices))}." if param.choices else ""
            help_text = (f"{param.description}{choices}{default}"
                         + (" (required)" if param.required else ""))
            if param.secret:  # also -file and -env, so that no password need show in ps
                add_secret_flags(group, param, help_text)
                continue
            # Raw text: Operation.validate parses and checks it, exactly as for HTTP.
            group.add_argument(_param_flag(param.name), dest=f"param:{param.name}",
                               metavar=param.kind.upper(), default=None, help=help_text)
        p.add_argument("files", nargs="+", metavar="FILE",
                       help=f"{op.inputs.min} to {op.inputs.max} input files, in order "
                            f"({', '.join(op.inputs.media_types)}).")
        _add_output_flag(p, "the result")
    p = ops.add_parser(pipeline.NAME, help=pipeline.PIPELINE.summary,
                       description=pipeline.PIPELINE.summary, parents=[parent],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_run_epilog(False))
    add_secret_flags(p, pipeline.STEPS_PARAM, pipeline.STEPS_PARAM.description + " (required)")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="The input files of the first step, in order.")
    _add_output_flag(p, "the last step's result")


def _add_output_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--output", metavar="OUT", default=None,
                   help=f"Where to write {what}: FILE, DIR/ ({what}'s own name inside it) "
                        "or '-' (standard output, also without -o; a PDF or a zip only when "
                        "it is not a terminal).")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every settings flag is accepted before or after a command."""
    settings_parent = argparse.ArgumentParser(add_help=False)
    settings_mod.add_flags(settings_parent)
    parser = argparse.ArgumentParser(
        prog="notrace", parents=[settings_parent],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="notrace: a zero-trace PDF service.",
        epilog="settings (environment variable, flag, default):\n"
               + "\n".join(f"  {s.env:28} {s.flag:22} {s.default_text()}"
                           for s in settings_mod.SETTINGS)
               + "\n\n" + _exit_codes_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("serve", parents=[settings_parent],
                        help="Run the HTTP service (default 127.0.0.1:8000).")
    run = commands.add_parser("run", help="Run one operation on local files.",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=_run_epilog(True))
    _add_run_parsers(run)
    commands.add_parser("check", parents=[settings_parent],
                        help="Show the isolation layers and run the sandbox self-test.")
    keys_cmd = commands.add_parser("keys", help="Make API keys (NOTRACE_API_KEYS_FILE).")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND",
                                       required=True)
    new = keys_sub.add_parser("new", help="Print a fresh key, once, and its keys-file line.")
    new.add_argument("name", metavar="NAME",
                     help="The key's name, as logs and rate limits will show it.")
    return parser


# --- serve ---------------------------------------------------------------------------

async def _serve(settings) -> None:
    """Start, serve until SIGTERM/SIGINT, then drain and stop (bounded by the grace)."""
    runner = web.AppRunner(make_app(settings), handle_signals=False, access_log=None,
                           shutdown_timeout=settings.shutdown_grace_s,
                           # The head of a request must arrive within the upload deadline
                           # too: aiohttp closes a connection idle (or trickling a head)
                           # that long.
                           keepalive_timeout=settings.upload_timeout_s)
    await runner.setup()  # starts the sandbox (cleanup context)
    answer_protocol_errors_as_problems(runner.server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # handlers only set the event
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.port
        logger.info("listening", extra={"fields": {"host": settings.host, "port": port}})
        await stop.wait()
        logger.info("draining", extra={"fields": {"grace_s": settings.shutdown_grace_s}})
    finally:
        await runner.cleanup()  # stop listening, wait for in-flight requests, close sandbox
    logger.info("stopped")


def serve(settings) -> int:
    hygiene.scrub_freed_memory()  # re-execs once: freed buffers are overwritten (README)
    raise_nofile_limit()  # uploads hold a memfd per file; the sandbox inherits the limit
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:  # e.g. the port is taken: configuration, safe to show
        logger.error("cannot listen", extra={"fields": {"host": settings.host,
                                                        "port": settings.port}})
        print(f"notrace: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


# --- run -----------------------------------------------------------------------------

def _read_inputs(op: Operation, paths: list[str]) -> list[MemFile]:
    if not op.inputs.min <= len(paths) <= max_files(op):
        raise wrong_count(op)
    files: list[MemFile] = []
    try:
        for path in paths:
            mem = MemFile("input")
            files.append(mem)
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    mem.write(chunk)
            check_kind(op, mem.read(0, min(mem.size, SNIFF_BYTES)))
    except BaseException:
        for mem in files:
            mem.close()
        raise
    return files


def _job(settings, args: argparse.Namespace) -> tuple[Operation, dict, object, int]:
    """(the answering operation, the job's params, its limits, its manifest's page budget)
    for `notrace run`, validated exactly as the HTTP service validates."""
    if args.operation == pipeline.NAME:
        steps = pipeline.validate({"steps": getattr(args, "param:steps")}, len(args.files))
        return (steps.last, steps.job_params(settings.max_pages), steps.limits(),
                steps.manifest_pages(settings.max_pages))
    op = OPERATIONS[args.operation]
    raw = {p.name: getattr(args, f"param:{p.name}") for p in op.params
           if getattr(args, f"param:{p.name}") is not None}
    return op, job_params(op, op.validate(raw), settings), op.limits, settings.max_pages


def _run_job(sandbox, settings, files: list[MemFile], params: dict, limits) -> Result:
    """The job's final Result: safe's phases are several jobs (notrace/safe.py)."""
    if params["operation"] == safe.NAME:
        return safe.run_sync(sandbox, files, params["params"], settings)
    return sandbox.run_sync(files, params, limits)


def _secret_params(operation: str) -> tuple:
    return (pipeline.PIPELINE if operation == pipeline.NAME else OPERATIONS[operation]).params


def run(settings, args: argparse.Namespace) -> int:
    try:
        resolve_secrets(args, _secret_params(args.operation))
        if _may_ask_password(args, required=True):  # decrypt: no job can do without it
            setattr(args, "param:password", ask("password", "--password"))
        op, params, limits, manifest_pages = _job(settings, args)
        target = plan_output(args.output, binary=binary_answer(op.output))
        # A pipeline's files are those of its first step (the steps part is checked).
        first = params["steps"][0]["operation"] if args.operation == pipeline.NAME else op.name
        files = _read_inputs(OPERATIONS[first], args.files)
    except ParamError as exc:
        return _fail(HttpProblem("bad-parameter", str(exc)))
    except HttpProblem as problem:
        return _fail(problem)
    except (SecretError, OutputError) as exc:
        return _usage(str(exc))
    except OSError as exc:
        return _usage(f"cannot read {exc.filename or 'an input file'}: {exc.strerror}")
    sandbox = make_sandbox(settings)
    try:
        while True:
            try:
                answer = interpret(op, _run_job(sandbox, settings, files, params, limits),
                                   max_pages=manifest_pages)
                break
            except HttpProblem as problem:
                if problem.type.slug != "password-required" or not _may_ask_password(args):
                    raise
            # The document needs a password, none was given and a person is there: ask
            # once, then run again with it (validated as any other value).
            setattr(args, "param:password", ask("password", "--password"))
            op, params, limits, manifest_pages = _job(settings, args)
    except ParamError as exc:
        return _fail(HttpProblem("bad-parameter", str(exc)))
    except SecretError as exc:
        return _usage(str(exc))
    except HttpProblem as problem:
        return _fail(problem)
    except BadManifest:
        return _fail(HttpProblem("processing-crashed"))
    except SandboxError as exc:
        print(f"notrace: the sandbox cannot start: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        for mem in files:
            mem.close()
        sandbox.close_sync()
    with answer:
        try:
            write_output(target, answer.body.chunks(), operation=op.name,
                         media_type=answer.media_type, filename=answer.filename)
        except OutputError as exc:
            return _usage(str(exc))
    if answer.report and (op.output != "json" or args.operation == pipeline.NAME):
        print(json.dumps({"report": answer.report}, ensure_ascii=True), file=sys.stderr)
    return EXIT_OK


def _may_ask_password(args: argparse.Namespace, *, required: bool = False) -> bool:
    """A prompt is worth it: the operation takes `password` (`required`: needs one), none
    was given (no flag, no NOTRACE_PASSWORD) and standard input is a terminal."""
    takes = args.operation != pipeline.NAME and any(
        p.name == "password" and (p.required or not required)
        for p in OPERATIONS[args.operation].params)
    return (takes and getattr(args, "param:password", None) is None
            and sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty())


def _usage(message: str) -> int:
    print(f"notrace: {message}", file=sys.stderr)
    return EXIT_USAGE


def _fail(problem: HttpProblem) -> int:
    detail = problem.detail
    step = problem.extra.get("step")
    if step is not None and not detail.startswith("steps["):  # a step failed as it ran
        detail = f"steps[{step}] ({problem.extra.get('operation')}): {detail}"
    print(f"notrace: {problem.type.title}: {detail} ({problem.type.uri})", file=sys.stderr)
    if problem.status == 503:  # busy, restarting, not ready: not the document's fault
        return EXIT_UNAVAILABLE
    return EXIT_BUG if problem.status >= 500 else EXIT_DOCUMENT


# --- keys ----------------------------------------------------------------------------

def new_key(name: str) -> int:
    """Print a fresh API key (stdout, shown this once: only its hash is kept) and the
    line that makes the server accept it."""
    try:
        key, line = auth.new_key(name)
    except ValueError as exc:
        print(f"notrace: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"API key for {name} (shown this once; give it to its user):\n  {key}\n"
          f"Add this line to the NOTRACE_API_KEYS_FILE file, then restart the server:\n"
          f"  {line}")
    return EXIT_OK


# --- check ---------------------------------------------------------------------------

def check() -> int:
    """The sandbox's own check: lists the isolation layers in force on this host, then
    proves each one holds against an escape attempt (exit 0 when all do)."""
    from sandbox.check import run_check  # imported here: only this command needs it
    return run_check()


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("notrace: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "keys":   # needs no settings: the keys file may not exist yet
        return new_key(args.name)
    try:
        settings = settings_mod.load(overrides=vars(args))
    except settings_mod.SettingsError as exc:
        print(f"notrace: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logs(settings.log_level)
    if args.command == "serve":
        return serve(settings)
    if args.command == "run":
        return run(settings, args)
    return check()
