"""HTTP transport: canonical msgpack bodies over loopback HTTP.

Requests and answers are the canonical bytes of a message (``application/msgpack``);
raw-byte routes (``add_raw_post_route``, ``add_raw_get_route``) carry data that is not a
message, such as a storage node's blobs.
A refusal is a JSON body ``{"error": code, "kind": ErrorClass, "message": ...}`` with a
4xx status (5xx for our own faults); :class:`NodeClient` turns it back into a typed
:class:`NodeRefused` so callers see why, not a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sealbridge.core.errors import LocalProtocolError, RemoteProtocolError, SealbridgeError

MSGPACK = "application/msgpack"
OCTET_STREAM = "application/octet-stream"


class TransportError(SealbridgeError):
    """A node could not be reached or answered with something unreadable."""

    code = "transport"


class NodeRefused(RemoteProtocolError):
    """A node answered with a typed refusal."""

    code = "node_refused"

    def __init__(self, message: str, *, remote_code: str, kind: str, status: int) -> None:
        super().__init__(message)
        self.remote_code = remote_code
        self.kind = kind
        self.status = status


class BodyTooLarge(RemoteProtocolError):
    """A request body is larger than the route accepts."""

    code = "too_large"


def error_status(exc: SealbridgeError) -> int:
    if getattr(exc, "remote_code", exc.code) in {"unknown_contract", "not_found"}:
        return 404
    if isinstance(exc, RemoteProtocolError):
        return 400
    if isinstance(exc, LocalProtocolError):
        return 409
    return 500


def error_body(exc: SealbridgeError) -> dict[str, str]:
    kind = getattr(exc, "kind", type(exc).__name__)
    code = getattr(exc, "remote_code", exc.code)
    return {"error": str(code), "kind": str(kind), "message": exc.message}


def install_error_handler(app: FastAPI) -> None:
    @app.exception_handler(SealbridgeError)
    async def _handle(_: Request, exc: SealbridgeError) -> JSONResponse:
        return JSONResponse(status_code=error_status(exc), content=error_body(exc))


BytesHandler = Callable[[bytes], bytes]


DEFAULT_MAX_BODY = 1 << 20  # bytes of a message body on a route that names no other cap


def add_bytes_route(
    app: FastAPI, path: str, handler: BytesHandler, *, max_body: int = DEFAULT_MAX_BODY
) -> None:
    """POST ``path``: the body (at most ``max_body`` bytes, else a typed BodyTooLarge
    refusal before the rest is read) is passed as bytes to ``handler``; its bytes are
    returned."""
    add_raw_post_route(app, path, handler, max_body=max_body, media_type=MSGPACK)


async def _run_blocking(handler: BytesHandler, body: bytes) -> bytes:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(handler, body)


async def _read_body(request: Request, max_body: int) -> bytes:
    """The request body, refused with BodyTooLarge as soon as it exceeds ``max_body``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise BodyTooLarge(f"body of {declared} bytes; this route accepts at most {max_body}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_body:
            raise BodyTooLarge(f"body over {max_body} bytes; this route accepts at most that")
        chunks.append(chunk)
    return b"".join(chunks)


def add_raw_post_route(
    app: FastAPI,
    path: str,
    handler: BytesHandler,
    *,
    max_body: int,
    media_type: str = MSGPACK,
) -> None:
    """POST ``path``: the raw body (at most ``max_body`` bytes, else a typed BodyTooLarge
    refusal before the rest is read) goes to ``handler`` in a worker thread; its bytes
    are the answer."""

    async def endpoint(request: Request) -> Response:
        body = await _read_body(request, max_body)
        result = await _run_blocking(handler, body)
        return Response(content=result, media_type=media_type)

    app.add_api_route(path, endpoint, methods=["POST"])


def add_raw_get_route(
    app: FastAPI,
    path: str,
    handler: Callable[[str], bytes],
    *,
    param: str,
    media_type: str = OCTET_STREAM,
) -> None:
    """GET ``path`` (with one ``{param}`` segment): ``handler(value)`` runs in a worker
    thread and its bytes are the answer."""

    async def endpoint(request: Request) -> Response:
        import anyio.to_thread

        value = str(request.path_params[param])
        result = await anyio.to_thread.run_sync(handler, value)
        return Response(content=result, media_type=media_type)

    app.add_api_route(path, endpoint, methods=["GET"])


def add_json_route(app: FastAPI, path: str, handler: Callable[[], Any]) -> None:
    """GET ``path`` answering ``handler()`` as JSON."""

    async def endpoint() -> JSONResponse:
        return JSONResponse(content=handler())

    app.add_api_route(path, endpoint, methods=["GET"])


class NodeClient:
    """A small synchronous client of one node's HTTP API."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        # Plain http (the devnet's loopback) has no certificates to check: skip loading the
        # CA bundle, which costs 20-60 ms per client. https keeps full verification.
        plain = self.base_url.startswith("http://")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, verify=not plain)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def post(self, path: str, payload: bytes) -> bytes:
        try:
            response = self._client.post(path, content=payload, headers={"content-type": MSGPACK})
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.base_url}{path}: {exc}") from exc
        self._raise_for_refusal(response)
        return response.content

    def post_raw(self, path: str, payload: bytes, *, content_type: str = OCTET_STREAM) -> bytes:
        """POST raw bytes (not a message); the answer's bytes, or a typed refusal."""
        try:
            response = self._client.post(
                path, content=payload, headers={"content-type": content_type}
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.base_url}{path}: {exc}") from exc
        self._raise_for_refusal(response)
        return response.content

    def get_bytes(self, path: str) -> bytes:
        """GET raw bytes; a typed refusal (e.g. 404) raises NodeRefused."""
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.base_url}{path}: {exc}") from exc
        self._raise_for_refusal(response)
        return response.content

    def get_json(self, path: str) -> Any:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.base_url}{path}: {exc}") from exc
        self._raise_for_refusal(response)
        try:
            return response.json()
        except json.JSONDecodeError as exc:
            raise TransportError(f"{self.base_url}{path} answered non-JSON") from exc

    def _raise_for_refusal(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
            raise NodeRefused(
                str(body["message"]),
                remote_code=str(body["error"]),
                kind=str(body["kind"]),
                status=response.status_code,
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TransportError(
                f"{self.base_url} answered HTTP {response.status_code}: {response.text[:200]}"
            ) from exc
