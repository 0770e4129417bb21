"""Every POST route of a node caps its body: an oversized body is a typed refusal."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sealbridge.net.http import DEFAULT_MAX_BODY, add_bytes_route, install_error_handler


def make_app(calls: list[int]) -> FastAPI:
    app = FastAPI()
    install_error_handler(app)

    def echo(body: bytes) -> bytes:
        calls.append(len(body))
        return body

    add_bytes_route(app, "/v1/echo", echo)
    add_bytes_route(app, "/v1/tiny", echo, max_body=16)
    return app


def test_bodies_within_the_cap_reach_the_handler() -> None:
    calls: list[int] = []
    client = TestClient(make_app(calls))
    assert client.post("/v1/echo", content=b"x" * 1000).content == b"x" * 1000
    assert calls == [1000]


def test_oversized_bodies_are_refused_before_the_handler() -> None:
    calls: list[int] = []
    client = TestClient(make_app(calls))
    answer = client.post("/v1/echo", content=b"x" * (DEFAULT_MAX_BODY + 1))
    assert answer.status_code == 400 and answer.json()["error"] == "too_large"
    answer = client.post("/v1/tiny", content=b"x" * 17)
    assert answer.status_code == 400 and answer.json()["error"] == "too_large"
    assert calls == []
