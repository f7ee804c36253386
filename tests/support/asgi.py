"""Drive the ASGI app one request at a time, as a server would, message by message."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Scope


@dataclass
class Answer:
    status: int = 0  #: 0: none sent
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def http_scope(
    method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> Scope:
    """The scope uvicorn would give this request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("service", 80),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"host", b"service"), *headers],
    }


async def call(app: ASGIApp, scope: Scope, messages: list[Message], timeout: float = 10) -> Answer:
    """One request: the client's `messages` in turn, then silence (a client that still
    has more to send, or waits). The app must finish within `timeout` seconds."""
    queue = list(messages)
    answer = Answer()

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    await asyncio.wait_for(app(scope, receive, send), timeout=timeout)
    return answer


def chunks(total: int, size: int = 1024, byte: bytes = b" ") -> list[dict[str, Any]]:
    """`total` bytes of body in messages of `size`."""
    sent = 0
    messages: list[dict[str, Any]] = []
    while sent < total:
        part = min(size, total - sent)
        sent += part
        messages.append({"type": "http.request", "body": byte * part, "more_body": sent < total})
    return messages
