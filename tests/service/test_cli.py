"""`notrace run` without surprises (issue 11): where answers go, paths that cannot be
written, archives that are always zips, passwords that never show in `ps`, restricted
permissions that hold. Every run is the real command in a subprocess, with the real
sandbox."""
from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
import zipfile

import pikepdf
import psutil
import pytest

from notrace.cli import _fail
from notrace.problems import HttpProblem
from tests.pdfs import make_encrypted_pdf, make_image_png, make_pdf
from tests.service.server import ROOT

pytestmark = pytest.mark.timeout(120)

_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
_CLI = [sys.executable, "-m", "notrace", "run"]
EXIT_OK, EXIT_DOCUMENT, EXIT_USAGE = 0, 1, 2


def notrace(*args, input: bytes | None = None, env: dict | None = None, **kw):
    return subprocess.run([*_CLI, *map(str, args)], cwd=ROOT, capture_output=True,
                          input=input, timeout=100, env={**_ENV, **(env or {})}, **kw)


def one_line_error(done) -> str:
    """The failure's stderr: one readable line, never a traceback."""
    text = done.stderr.decode()
    assert "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1, text
    assert text.startswith("notrace: "), text
    return text


def members(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist()


@pytest.fixture()
def three(tmp_path):
    path = tmp_path / "three.pdf"
    path.write_bytes(make_pdf(3))
    return path


def on_a_terminal(*args) -> tuple[int, bytes, bytes]:
    """Run with standard output on a pseudo-terminal: (exit code, what the terminal
    got, stderr)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([*_CLI, *map(str, args)], cwd=ROOT, env=_ENV,
                                stdout=follower, stderr=subprocess.PIPE)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            seen += chunk
        stderr = proc.stderr.read()
        return proc.wait(60), seen, stderr
    finally:
        os.close(leader)


# --- where the answer goes ----------------------------------------------------------

def test_a_json_answer_goes_to_standard_output_without_o(three):
    done = notrace("info", three)
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["pages"] == 3
    code, seen, _ = on_a_terminal("info", three)  # to a terminal too, with a newline
    assert code == EXIT_OK and b'"pages": 3' in seen and seen.endswith(b"\n")


@pytest.mark.parametrize("output", [[], ["-o", "-"]])
def test_a_binary_answer_goes_to_a_pipe_but_never_to_a_terminal(three, output):
    done = notrace("rotate", "--angle", "90", three, *output)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith(b"%PDF-")
    code, seen, stderr = on_a_terminal("rotate", "--angle", "90", three, *output)
    assert code == EXIT_USAGE, stderr
    assert seen == b""
    assert b"terminal" in stderr and b"-o FILE" in stderr and b"Traceback" not in stderr


def test_json_or_a_zip_is_judged_by_the_answer(tmp_path):
    """attachments answers JSON, or a zip with extract=true: known only once it answered."""
    path = tmp_path / "attached.pdf"
    with pikepdf.new() as pdf:
        pdf.add_blank_page()
        pdf.attachments["note.txt"] = pikepdf.AttachedFileSpec(pdf, b"hello")
        pdf.save(path)
    code, seen, stderr = on_a_terminal("attachments", path)
    assert code == EXIT_OK, stderr
    assert b"note.txt" in seen
    code, seen, stderr = on_a_terminal("attachments", "--extract", "true", path)
    assert code == EXIT_USAGE and b"terminal" in stderr and seen == b""


def test_a_directory_gets_the_answers_own_name_and_nothing_is_replaced(tmp_path, three):
    out = tmp_path / "out"
    out.mkdir()
    for args, name in ((["merge", three, three], "document.pdf"),
                       (["split", "--every", "1", three], "split.zip"),
                       (["info", three], "info.json")):
        target = f"{out}/" if name != "info.json" else out  # with or without the slash
        done = notrace(*args, "-o", target)
        assert done.returncode == EXIT_OK, done.stderr
        assert (out / name).is_file()
    assert len(pikepdf.open(out / "document.pdf").pages) == 6
    assert members((out / "split.zip").read_bytes()) == ["part-1.pdf", "part-2.pdf",
                                                         "part-3.pdf"]
    assert json.loads((out / "info.json").read_text())["pages"] == 3
    before = (out / "document.pdf").read_bytes()
    again = notrace("rotate", "--angle", "90", three, "-o", f"{out}/")
    assert again.returncode == EXIT_USAGE
    assert "already exists" in one_line_error(again)
    assert (out / "document.pdf").read_bytes() == before
    named = notrace("rotate", "--angle", "90", three, "-o", out / "document.pdf")
    assert named.returncode == EXIT_OK, named.stderr  # a file named outright is replaced
    assert (out / "document.pdf").read_bytes() != before


@pytest.mark.parametrize("where", ["missing/", "missing/out.pdf", "three.pdf/out.pdf",
                                   "three.pdf/", "/proc/notrace-out.pdf", ""])
def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, three, where):
    target = where if where.startswith("/") or not where else f"{tmp_path}/{where}"
    done = notrace("rotate", "--angle", "90", three, "-o", target)
    assert done.returncode == EXIT_USAGE
    assert "write" in one_line_error(done) or "-o needs" in done.stderr.decode()
    assert not os.path.exists(tmp_path / "missing")


def test_an_existing_output_is_untouched_when_the_job_fails(tmp_path, three):
    out = tmp_path / "out.pdf"
    out.write_bytes(b"my earlier result")
    (tmp_path / "not.pdf").write_bytes(b"not a pdf at all")
    done = notrace("merge", three, tmp_path / "not.pdf", "-o", out)
    assert done.returncode == EXIT_DOCUMENT
    one_line_error(done)
    assert out.read_bytes() == b"my earlier result"
    missing = notrace("rotate", "--angle", "90", tmp_path / "nope.pdf", "-o", out)
    assert missing.returncode == EXIT_USAGE
    assert "nope.pdf" in one_line_error(missing)


def test_help_of_an_operation_shows_its_parameters_only(three):
    done = notrace("decrypt", "--help")
    assert done.returncode == EXIT_OK
    text = done.stdout.decode()
    assert "--password-file" in text and "--password-env" in text and "--angle" not in text
    assert "NOTRACE_PASSWORD" in text and "exit codes:" in text
    for setting in ("--max-pages", "--child-memory-mb", "--host", "NOTRACE_MAX_PAGES"):
        assert setting not in text, setting  # the settings flags are hidden here...
    limited = notrace("info", "--max-pages", "2", three)  # ...and still accepted
    assert limited.returncode == EXIT_DOCUMENT and "too-many-pages" in one_line_error(limited)
    assert "--max-pages" in subprocess.run([sys.executable, "-m", "notrace", "--help"],
                                           cwd=ROOT, env=_ENV, capture_output=True,
                                           timeout=60).stdout.decode()


# --- archives -----------------------------------------------------------------------

def test_an_archive_of_one_part_is_a_zip_over_http_and_in_the_cli(server, tmp_path, three):
    one_image = server.post("from-images", [make_image_png()]).body
    (tmp_path / "image.pdf").write_bytes(one_image)
    cases = (("split", three.read_bytes(), {"ranges": "1-"}, ["part-1.pdf"]),
             ("images", one_image, {}, ["page-1-image-1.png"]))
    for operation, pdf, params, expected in cases:
        reply = server.post(operation, [pdf], params=params)
        assert reply.status == 200, reply.body[:300]
        assert reply.headers["content-type"] == "application/zip"
        assert members(reply.body) == expected
        source = three if operation == "split" else tmp_path / "image.pdf"
        flags = [x for k, v in params.items() for x in (f"--{k}", v)]
        done = notrace(operation, *flags, source)
        assert done.returncode == EXIT_OK, done.stderr
        assert members(done.stdout) == expected
        # A pipeline ending with it answers the same zip.
        steps = json.dumps([{"operation": "rotate", "params": {"angle": 90}},
                            {"operation": operation, "params": params}])
        chained = notrace("pipeline", "--steps", steps, source, "-o", "-")
        assert chained.returncode == EXIT_OK, chained.stderr
        assert members(chained.stdout) == expected


# --- passwords ----------------------------------------------------------------------

MARKER = "pw-Zq8Kx3-notrace-marker"


def _command_lines(root: psutil.Process) -> list[bytes]:
    """The raw /proc/PID/cmdline of `root` and every descendant still alive."""
    seen = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                seen.append(f.read())
        except OSError:
            pass
    return seen


def _run_watching_command_lines(args: list[str], env: dict) -> tuple[int, bytes, list[bytes]]:
    """Run `notrace run ARGS`, reading the command lines of the command and its fork
    server while they live: (exit code, stderr, the command lines seen)."""
    proc = subprocess.Popen([*_CLI, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    root, lines = psutil.Process(proc.pid), []
    while proc.poll() is None:
        try:
            lines += _command_lines(root)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.005)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr, lines


def test_a_password_file_keeps_the_password_out_of_every_command_line(tmp_path):
    source, out, secret = tmp_path / "locked.pdf", tmp_path / "open.pdf", tmp_path / "pw"
    source.write_bytes(make_encrypted_pdf(3, user=MARKER))
    secret.write_text(MARKER + "\n")
    code, stderr, lines = _run_watching_command_lines(
        ["decrypt", "--password-file", str(secret), str(source), "-o", str(out)], _ENV)
    assert code == EXIT_OK, stderr
    assert any(b"--password-file" in line for line in lines)
    assert any(b"\x00-I\x00-c\x00" in line for line in lines)  # the fork server's, too
    assert not any(MARKER.encode() in line for line in lines)
    assert b"warning" not in stderr
    with pikepdf.open(out) as pdf:
        assert not pdf.is_encrypted and len(pdf.pages) == 3


def test_notrace_password_is_the_password_and_in_no_command_line(tmp_path):
    source, out = tmp_path / "locked.pdf", tmp_path / "open.pdf"
    source.write_bytes(make_encrypted_pdf(3, user=MARKER))
    code, stderr, lines = _run_watching_command_lines(
        ["decrypt", str(source), "-o", str(out)], {**_ENV, "NOTRACE_PASSWORD": MARKER})
    assert code == EXIT_OK, stderr
    assert any(b"\x00-I\x00-c\x00" in line for line in lines)  # the fork server's, too
    assert not any(MARKER.encode() in line for line in lines)
    assert stderr == b""  # no warning, and the password in no message
    with pikepdf.open(out) as pdf:
        assert not pdf.is_encrypted and len(pdf.pages) == 3
    # A flag wins over the variable; a wrong one is the document's problem (exit 1).
    wrong = notrace("info", "--password-env", "MY_PW", source,
                    env={"MY_PW": "nope", "NOTRACE_PASSWORD": MARKER})
    assert wrong.returncode == EXIT_DOCUMENT and "password-wrong" in one_line_error(wrong)
    assert MARKER not in wrong.stderr.decode()
    none = notrace("info", source)  # no terminal to ask on: the document's problem
    assert none.returncode == EXIT_DOCUMENT and "password-required" in one_line_error(none)


def test_passwords_from_the_environment_from_stdin_and_with_a_warning(tmp_path):
    source = tmp_path / "locked.pdf"
    source.write_bytes(make_encrypted_pdf(2, user=MARKER))
    from_env = notrace("info", "--password-env", "MY_PW", source, env={"MY_PW": MARKER})
    from_stdin = notrace("info", "--password", "-", source, input=MARKER.encode() + b"\r\n")
    for done in (from_env, from_stdin):
        assert done.returncode == EXIT_OK, done.stderr
        assert json.loads(done.stdout)["encrypted"] is True and done.stderr == b""
    visible = notrace("info", "--password", MARKER, source)
    assert visible.returncode == EXIT_OK
    assert "visible to other users" in one_line_error(visible)
    assert MARKER not in visible.stderr.decode()
    wrong = notrace("info", "--password-env", "MY_PW", source, env={"MY_PW": "nope"})
    assert wrong.returncode == EXIT_DOCUMENT and "password" in one_line_error(wrong)


@pytest.mark.parametrize("operation, flags", [("info", ["--password", "-"]), ("info", []),
                                              ("decrypt", [])],
                         ids=["asked-for", "the-document-needs-one", "the-operation-needs-one"])
def test_a_password_is_asked_for_without_echo_on_a_terminal(tmp_path, operation, flags):
    """`--password -` on a terminal prompts; with no password at all, a document that
    turns out to need one is answered by a prompt and a second run (once), and an
    operation that always needs one asks before its job."""
    source = tmp_path / "locked.pdf"
    source.write_bytes(make_encrypted_pdf(2, user=MARKER))
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*_CLI, operation, *flags, str(source)], cwd=ROOT, env=_ENV,
            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # the pty becomes its controlling terminal (/dev/tty)
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(follower)
        shown = b""
        while b"password: " not in shown:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, f"no prompt; the terminal shows {shown!r}"
            shown += os.read(leader, 1024)
        os.write(leader, MARKER.encode() + b"\n")
        stdout, stderr = proc.communicate(timeout=60)
        while select.select([leader], [], [], 0.2)[0]:
            try:
                shown += os.read(leader, 1024)
            except OSError:  # EIO: the command has gone
                break
    finally:
        os.close(leader)
    assert proc.returncode == EXIT_OK, stderr
    assert MARKER.encode() not in shown  # not echoed
    if operation == "info":
        assert json.loads(stdout)["encrypted"] is True
    else:
        with pikepdf.open(io.BytesIO(stdout)) as pdf:
            assert not pdf.is_encrypted and len(pdf.pages) == 2


@pytest.mark.parametrize("args, words", [
    (["--password-env", "UNSET_VAR"], "UNSET_VAR is not set"),
    (["--password-file", "/nonexistent/pw"], "cannot read /nonexistent/pw"),
    (["--password", "-", "--password-file", "/etc/hostname"], "one way only"),
])
def test_a_password_that_cannot_be_read_is_a_usage_error(three, args, words):
    done = notrace("info", *args, three)
    assert done.returncode == EXIT_USAGE
    assert words in one_line_error(done)


def test_only_one_secret_reads_standard_input(three):
    done = notrace("encrypt", "--password", "-", "--owner-password", "-", three, "-o", "-",
                   input=b"a\nb\n")
    assert done.returncode == EXIT_USAGE
    assert "standard input is already read" in one_line_error(done)


# --- encrypt with restrictions --------------------------------------------------------

def test_restrictions_without_an_owner_password_get_a_random_one(tmp_path, three):
    out = tmp_path / "locked.pdf"
    done = notrace("encrypt", "--password-env", "PW", "--allow-print", "false", three,
                   "-o", out, env={"PW": MARKER})
    assert done.returncode == EXIT_OK, done.stderr
    report = json.loads(done.stderr.decode().splitlines()[-1])["report"]
    assert report["owner_password_generated"] is True
    assert report["permissions_enforced"] is True
    with pikepdf.open(out, password=MARKER) as pdf:
        assert pdf.user_password_matched and not pdf.owner_password_matched
        assert not pdf.allow.print_highres and pdf.allow.modify_other
    free = notrace("encrypt", "--password-env", "PW", three, "-o", out, env={"PW": MARKER})
    assert free.returncode == EXIT_OK, free.stderr
    report = json.loads(free.stderr.decode().splitlines()[-1])["report"]
    assert report["owner_password_generated"] is False


def test_an_owner_password_equal_to_the_password_with_restrictions_is_refused(server, three):
    params = {"password": MARKER, "owner_password": MARKER, "allow_modify": "false"}
    reply = server.post("encrypt", [three.read_bytes()], params=params)
    assert reply.status == 400
    problem = reply.json()
    assert problem["type"].endswith("/problems/bad-parameter")
    assert problem["param"] == "owner_password" and MARKER not in reply.body.decode()
    done = notrace("encrypt", "--password-env", "PW", "--owner-password-env", "PW",
                   "--allow-modify", "false", three, "-o", "-", env={"PW": MARKER})
    assert done.returncode == EXIT_DOCUMENT
    assert "owner_password: must differ" in one_line_error(done)


@pytest.mark.parametrize("slug, code", [
    ("malformed-pdf", 1), ("time-limit", 1), ("bad-parameter", 1), ("busy", 3),
    ("sandbox-restarting", 3), ("not-ready", 3), ("internal-error", 4)])
def test_a_problem_has_the_documented_exit_code(capsys, slug, code):
    """The README's exit table, problem by problem: 4xx the document's (1), 503 the
    sandbox's (3, try again), 500 ours (4); one line naming the type."""
    assert _fail(HttpProblem(slug)) == code
    err = capsys.readouterr().err
    assert err.startswith("notrace: ") and f"/problems/{slug}" in err
    assert len(err.strip().splitlines()) == 1
