"""API keys (notrace/auth.py): no key, a wrong key and a right key on every route, both
ways of presenting one, the constant-time compare, and keys never in a log line.

Real servers over loopback (tests/service/server.py) with a keys file written here; the
route list comes from the app's own router. The compare_digest check runs the real app
in this process, so the real function can be wrapped to record its calls.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket

import aiohttp
import pytest
from aiohttp import web

from notrace import auth
from notrace.app import make_app
from notrace.settings import SettingsError, load
from tests.pdfs import make_pdf
from tests.service.access import bearer, routes, write_keys

WRONG = auth.KEY_PREFIX + "not-a-key-of-this-server-at-all-0123456789"


@pytest.fixture(scope="module")
def keyed(start_server, tmp_path_factory):
    """Keys on (alice, bob), monitoring protected (the default), debug logs."""
    path, keys = write_keys(tmp_path_factory.mktemp("keys"), "alice", "bob")
    server = start_server(api_keys_file=path, workers=1, log_level="debug")
    return server, keys


def _is_unauthorized(reply, invalid: bool) -> None:
    assert reply.status == 401, (reply.status, reply.body[:200])
    assert reply.problem_type == "/problems/unauthorized"
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) == invalid


@pytest.mark.timeout(120)
def test_every_route_needs_a_key_unless_open(keyed):
    server, keys = keyed
    seen_open = set()
    for method, template, path in routes():
        is_open = template in auth.OPEN_ROUTES
        anonymous = server.request(method, path)
        wrong = server.request(method, path, headers=bearer(WRONG))
        right = server.request(method, path, headers=bearer(keys["alice"]))
        if is_open:
            seen_open.add(template)
            for reply in (anonymous, wrong, right):
                assert reply.status != 401, (method, path)
        else:
            _is_unauthorized(anonymous, invalid=False)
            _is_unauthorized(wrong, invalid=True)
            assert right.status != 401, (method, path, right.body[:200])
        assert WRONG.encode() not in wrong.body
    assert {"/health", "/docs", "/openapi.json", "/problems/{slug}"} <= seen_open
    for slug in ("unauthorized", "rate-limited"):     # documented, and open to read
        page = server.get(f"/problems/{slug}")
        assert page.status == 200 and b"NOTRACE_" in page.body, slug
    # An unknown path is no way around it either.
    _is_unauthorized(server.get("/no/such/path"), invalid=False)
    assert server.get("/no/such/path", headers=bearer(keys["bob"])).status == 404


@pytest.mark.timeout(60)
def test_monitoring_is_protected_by_default_when_keys_are_on(keyed):
    server, keys = keyed
    for path in ("/ready", "/metrics"):
        _is_unauthorized(server.get(path), invalid=False)
        assert server.get(path, headers=bearer(keys["bob"])).status == 200
    assert server.get("/health").status == 200


@pytest.mark.timeout(60)
def test_x_api_key_and_bearer_both_work_and_other_schemes_do_not(keyed):
    server, keys = keyed
    assert server.get("/api/v1/operations", headers={"X-API-Key": keys["bob"]}).status == 200
    assert server.get("/api/v1/operations",
                      headers={"Authorization": f"bearer  {keys['bob']}"}).status == 200
    reply = server.post("info", [make_pdf(2)], headers={"X-API-Key": keys["alice"]})
    assert reply.status == 200 and reply.json()["pages"] == 2
    _is_unauthorized(server.get("/api/v1/operations",
                                headers={"Authorization": f"Basic {keys['bob']}"}), False)
    _is_unauthorized(server.get("/api/v1/operations", headers={"X-API-Key": WRONG}), True)
    # A wrong Bearer key is not rescued by a right X-API-Key: Authorization is the one read.
    _is_unauthorized(server.get("/api/v1/operations", headers={
        **bearer(WRONG), "X-API-Key": keys["bob"]}), True)


@pytest.mark.timeout(60)
def test_the_answer_comes_before_the_body(keyed):
    """A 401 does not wait for the upload: 50 MB declared, none sent, answered at once."""
    server, _ = keyed
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/info HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/pdf\r\nContent-Length: 50000000\r\n\r\n")
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 401 "), head[:100]
    assert b"/problems/unauthorized" in head


@pytest.mark.timeout(60)
def test_keys_never_reach_a_log_line_but_their_names_do(keyed):
    server, keys = keyed
    for name, key in keys.items():
        assert server.get("/api/v1/operations", headers=bearer(key),
                          ).status == 200
        assert server.post("info", [make_pdf(1)], headers={"X-API-Key": key}).status == 200
    server.get("/api/v1/operations", headers=bearer(WRONG))
    server.get("/metrics", headers={"X-API-Key": WRONG})
    server.stop()   # flushes every line (a module fixture: later tests need no server)
    text = "\n".join(server.lines)
    records = server.log_records()
    for key in (*keys.values(), WRONG):
        assert key not in text
        assert key[len(auth.KEY_PREFIX):][:16] not in text
    named = {r.get("key") for r in records if r.get("msg") == "request"}
    assert {"alice", "bob"} <= named
    refused = [r for r in records if r.get("problem") == "unauthorized"]
    assert refused and all("key" not in r for r in refused)


# --- in this process: the constant-time compare -----------------------------------

@pytest.mark.timeout(120)
async def test_the_compare_is_constant_time_on_digests(monkeypatch, tmp_path):
    path, keys = write_keys(tmp_path, "alice", "bob", "carol")
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    settings = load(environ={"NOTRACE_WORKERS": "1", "NOTRACE_API_KEYS_FILE": str(path)})
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/operations"
        async with aiohttp.ClientSession() as session:
            for headers, status in ((bearer(keys["alice"]), 200), (bearer(WRONG), 401),
                                    ({"X-API-Key": keys["carol"]}, 200)):
                calls.clear()
                async with session.get(url, headers=headers) as reply:
                    assert reply.status == status
                presented = headers.get("X-API-Key") or headers["Authorization"][7:]
                digest = hashlib.sha256(presented.encode()).digest()
                # Every stored digest compared, the first match included: no early exit.
                assert len(calls) == 3, calls
                assert all(a == digest and len(b) == 32 for a, b in calls)
    finally:
        await runner.cleanup()


def test_the_keys_file_is_checked_at_start_naming_the_line(tmp_path):
    path, _ = write_keys(tmp_path, "alice")
    assert load(environ={"NOTRACE_API_KEYS_FILE": str(path)}).api_keys_file == str(path)
    bad = {
        "alice:sha256:abc\n": "line 1",
        "# c\nalice:md5:" + "0" * 64 + "\n": "line 2",
        "a b:sha256:" + "0" * 64 + "\n": "line 1",
        f"x:sha256:{'0' * 64}\nx:sha256:{'1' * 64}\n": "line 2",
        "# nothing\n": "at least one key",
    }
    for text, says in bad.items():
        path.write_text(text)
        with pytest.raises(SettingsError, match="NOTRACE_API_KEYS_FILE") as err:
            load(environ={"NOTRACE_API_KEYS_FILE": str(path)})
        assert says in str(err.value)
        assert "sha256:" + "0" * 8 not in str(err.value)   # never the line itself
    with pytest.raises(SettingsError, match="readable"):
        load(environ={"NOTRACE_API_KEYS_FILE": str(tmp_path / "missing")})


def test_keys_new_prints_a_key_and_the_line_that_accepts_it(capsys):
    from notrace.cli import main
    assert main(["keys", "new", "ci-runner"]) == 0
    out = capsys.readouterr().out
    key = next(w for w in out.split() if w.startswith(auth.KEY_PREFIX))
    line = next(w for w in out.split() if w.startswith("ci-runner:sha256:"))
    assert len(key) >= 40
    assert auth.parse_keys([line]).identify(key) == "ci-runner"
    assert main(["keys", "new", "ci-runner"]) == 0
    assert key not in capsys.readouterr().out        # fresh every time
    assert main(["keys", "new", "no spaces"]) == 2
    assert "key name" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_keys_are_off_by_default_and_nothing_asks_for_one(server):
    for method, _, path in routes():
        reply = server.request(method, path)
        assert reply.status != 401 and "www-authenticate" not in reply.headers, (method, path)
    assert server.post("info", [make_pdf(1)]).status == 200
    assert server.get("/no/such/path").status == 404


def test_openapi_declares_the_keys_and_their_answers():
    from notrace.openapi import build
    from notrace.operations import OPERATIONS
    spec = build(OPERATIONS)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    assert {} in spec["security"]                  # keys are optional: off by default
    for name in OPERATIONS:
        responses = spec["paths"][f"/api/v1/{name}"]["post"]["responses"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        assert "Retry-After" in responses["429"]["headers"]
    for path, item in spec["paths"].items():
        is_open = item["get"].get("security") == [{}] if "get" in item else False
        assert is_open == (path in auth.OPEN_ROUTES), path
        if not is_open and "get" in item:
            assert "401" in item["get"]["responses"], path
