"""Secrets never in URLs: passwords in the query string are refused, headers carry them.

Runs in the test process against the shared real server. Query strings end up in yarl's
URL cache, proxies' logs and browser histories, so a secret parameter there is a 400 that
says where to put it; a raw-body request sends it in `X-Notrace-<Name>` instead.
"""
from __future__ import annotations

import pytest

from notrace.operations import OPERATIONS
from notrace.uploads import secret_header, wipe
from tests.pdfs import make_encrypted_pdf, make_pdf, open_any

PDF = make_pdf(2)
RAW = {"Content-Type": "application/pdf"}


@pytest.mark.parametrize("path, param", [
    ("/api/v1/info?password=hunter2", "password"),
    ("/api/v1/encrypt?password=a&owner_password=b", "password"),
    ("/api/v1/encrypt?owner_password=b", "owner_password"),
    ("/api/v1/encrypt?current_password=c", "current_password"),
])
def test_a_secret_in_the_query_string_is_refused(server, path, param):
    reply = server.request("POST", path, PDF, RAW)
    assert reply.status == 400, reply.body[:300]
    doc = reply.json()
    assert (doc["type"], doc["param"]) == ("/problems/bad-parameter", param)
    assert secret_header(param) in doc["detail"] and "text part" in doc["detail"]
    assert "hunter2" not in reply.body.decode()


def test_multipart_with_a_secret_in_the_query_string_is_refused_too(server):
    reply = server.post("info?password=x", [make_encrypted_pdf(1, user="x")])
    assert (reply.status, reply.json()["param"]) == (400, "password")


def test_passwords_in_headers_encrypt_then_decrypt(server):
    locked = server.request("POST", "/api/v1/encrypt", PDF,
                            {**RAW, "X-Notrace-Password": "s3cret",
                             "X-Notrace-Owner-Password": "owner"})
    assert locked.status == 200, locked.body[:300]
    assert len(open_any(locked.body, "s3cret").pages) == 2
    assert server.request("POST", "/api/v1/info", locked.body, RAW).json()["type"] == \
        "/problems/password-required"
    opened = server.request("POST", "/api/v1/decrypt", locked.body,
                            {**RAW, "X-Notrace-Password": "s3cret"})
    assert opened.status == 200, opened.body[:300]
    assert len(open_any(opened.body).pages) == 2   # no password needed any more


def test_a_header_and_a_text_part_for_the_same_secret_is_given_twice(server):
    reply = server.post("info", [make_encrypted_pdf(1, user="x")], {"password": "x"},
                        headers={"X-Notrace-Password": "x"})
    assert (reply.status, reply.json()["type"]) == (400, "/problems/bad-request")


def test_secret_headers_follow_the_declarations():
    secrets = {p.name for op in OPERATIONS.values() for p in op.params if p.secret}
    assert secrets == {"password", "owner_password", "current_password", "terms"}
    assert secret_header("owner_password") == "X-Notrace-Owner-Password"
    assert secret_header("terms") == "X-Notrace-Terms"   # redact's: what it must hide


def test_wipe_zeroes_in_place():
    buffer = bytearray(b"hunter2" * 100)
    view = memoryview(buffer)
    wipe(buffer)
    assert view.tobytes() == bytes(700) and len(buffer) == 700
    wipe(bytearray())   # nothing to do


def test_openapi_puts_secrets_in_headers(server):
    spec = server.get("/openapi.json").json()
    params = {(p["in"], p["name"]) for p in spec["paths"]["/api/v1/encrypt"]["post"]["parameters"]}
    assert {("header", "X-Notrace-Password"), ("header", "X-Notrace-Owner-Password"),
            ("header", "X-Notrace-Current-Password")} <= params
    assert not {name for where, name in params if where == "query"} & \
        {"password", "owner_password", "current_password"}
