"""CORS (notrace/cors.py): preflights and simple requests from listed and other origins,
and nothing at all when NOTRACE_CORS_ORIGINS is empty (the default).

A real server with CORS on AND API keys on: a preflight carries no key and must pass,
while the answers a script reads (401s included) must name its origin.
"""
from __future__ import annotations

import pytest

from notrace.cors import parse_origins
from tests.service.access import bearer, write_keys

APP = "https://app.example"
OTHER = "https://evil.example"


@pytest.fixture(scope="module")
def cors(start_server, tmp_path_factory):
    path, keys = write_keys(tmp_path_factory.mktemp("keys"), "page")
    server = start_server(cors_origins=f"{APP}, http://localhost:3000", api_keys_file=path,
                          workers=1)
    return server, keys["page"]


def _preflight(server, origin: str, method: str = "POST", path: str = "/api/v1/merge",
               headers: str = "authorization, x-notrace-password"):
    return server.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers})


def _split(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


@pytest.mark.timeout(60)
def test_a_preflight_from_a_listed_origin_is_answered_without_a_key(cors):
    server, _ = cors
    reply = _preflight(server, APP)
    assert reply.status == 204, reply.body[:200]
    assert reply.headers["access-control-allow-origin"] == APP
    assert "POST" in _split(reply.headers["access-control-allow-methods"]) | {"POST"}
    assert "post" in _split(reply.headers["access-control-allow-methods"])
    allowed = _split(reply.headers["access-control-allow-headers"])
    assert {"authorization", "x-api-key", "x-notrace-password", "x-notrace-owner-password",
            "content-type"} <= allowed
    assert int(reply.headers["access-control-max-age"]) > 0
    assert "origin" in _split(reply.headers["vary"])
    assert "access-control-allow-credentials" not in reply.headers
    get = _preflight(server, "http://localhost:3000", "GET", "/api/v1/operations", "x-api-key")
    assert get.status == 204
    assert _split(get.headers["access-control-allow-methods"]) >= {"get"}


@pytest.mark.timeout(60)
def test_other_preflights_get_no_cors_headers(cors):
    server, _ = cors
    for reply in (_preflight(server, OTHER),                         # origin not listed
                  _preflight(server, APP.upper()),                   # exact match only
                  server.request("OPTIONS", "/api/v1/merge", headers={"Origin": OTHER})):
        assert reply.status in (401, 405), (reply.status, reply.body[:200])
        assert not any(h.startswith("access-control-") for h in reply.headers), reply.headers
    # A listed origin asking for a method the path lacks: not a 2xx, so the browser's
    # preflight fails (the answer itself may name the origin: it is a readable problem).
    put = _preflight(server, APP, method="PUT")
    assert put.status in (401, 405) and "access-control-allow-methods" not in put.headers


@pytest.mark.timeout(60)
def test_simple_requests_name_only_a_listed_origin(cors):
    server, key = cors
    ok = server.get("/api/v1/operations", headers={"Origin": APP, **bearer(key)})
    assert ok.status == 200 and ok.headers["access-control-allow-origin"] == APP
    assert "x-notrace-report" in _split(ok.headers["access-control-expose-headers"])
    refused = server.get("/api/v1/operations", headers={"Origin": APP})
    assert refused.status == 401
    assert refused.headers["access-control-allow-origin"] == APP   # the script can read it
    assert "www-authenticate" in _split(refused.headers["access-control-expose-headers"])
    other = server.get("/api/v1/operations", headers={"Origin": OTHER, **bearer(key)})
    assert other.status == 200 and "access-control-allow-origin" not in other.headers
    assert "origin" in _split(other.headers["vary"])


@pytest.mark.timeout(60)
def test_cors_is_off_by_default(server):
    reply = _preflight(server, APP)
    assert reply.status == 405
    simple = server.get("/api/v1/operations", headers={"Origin": APP})
    assert simple.status == 200
    for r in (reply, simple):
        assert not any(h.startswith("access-control-") for h in r.headers)
        assert "origin" not in _split(r.headers.get("vary", ""))


def test_origins_are_exact_and_checked():
    assert parse_origins("https://App.Example:443, http://localhost:3000 http://a.b:80") == (
        "https://app.example", "http://localhost:3000", "http://a.b")
    assert parse_origins("") == ()
    for bad in ("*", "https://a.example/path", "ftp://a.example", "a.example",
                "https://a.example:99999", "https://u:p@a.example"):
        with pytest.raises(ValueError):
            parse_origins(bad)
