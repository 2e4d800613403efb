"""Settings, problem table, log formatting and graceful shutdown."""
from __future__ import annotations

import concurrent.futures
import json
import logging
import time

import pytest

from notrace import problems, settings
from notrace.cli import main
from notrace.logs import JsonFormatter
from tests.service import builders as b
from tests.service.access import wait_until
from tests.service.test_restarting import _metric


def test_settings_defaults_env_and_flags():
    s = settings.load(environ={})
    assert (s.host, s.port, s.queue, s.max_upload_mb, s.max_pages) == ("127.0.0.1", 8000, 16,
                                                                       100, 2000)
    assert (s.child_memory_mb, s.child_cpu_s, s.child_wall_s) == (512, 20, 30.0)
    s = settings.load(environ={"NOTRACE_QUEUE": "3", "NOTRACE_PORT": "9"},
                      overrides={"port": "10"})
    assert (s.queue, s.port) == (3, 10)
    with pytest.raises(settings.SettingsError, match="NOTRACE_WORKERS"):
        settings.load(environ={"NOTRACE_WORKERS": "0"})
    with pytest.raises(Exception):
        s.port = 1   # frozen


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for s in settings.SETTINGS:
        assert s.env in out and s.flag in out


def test_every_child_problem_has_a_type():
    assert problems.unmapped_child_codes() == set()
    assert problems.for_child_code("no-such-code", "x").type.slug == "malformed-pdf"
    assert problems.for_child_code("password_required", "a\nb").detail == \
        problems.TYPES["password-required"].title


def test_third_party_log_lines_lose_their_arguments():
    record = logging.LogRecord("aiohttp.server", logging.ERROR, "f", 1,
                               "Error handling request from %s", ("10.1.2.3",), None)
    line = json.loads(JsonFormatter().format(record))
    assert "10.1.2.3" not in json.dumps(line)
    try:
        raise ValueError("/home/user/secret-name.pdf")
    except ValueError:
        import sys
        record = logging.LogRecord("notrace", logging.ERROR, "f", 1, "boom", (), sys.exc_info())
    text = JsonFormatter().format(record)
    assert "secret-name" not in text and "ValueError" in text


@pytest.mark.timeout(60)
def test_sigterm_drains_in_flight_requests(start_server):
    server = start_server()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.post, "text", [b.slow_text_pdf(30_000)], b.SLOW_TEXT)
        # SIGTERM once the job runs (a fixed sleep could send it before the request came)
        wait_until(lambda: _metric(server, "notrace_jobs_in_flight") == 1,
                   what="the slow job running in a child")
        started = time.monotonic()
        code = server.stop()
        reply = slow.result()
    assert reply.status == 200
    assert code == 0
    assert time.monotonic() - started < 30
    assert any('"msg": "draining"' in line for line in server.lines)
