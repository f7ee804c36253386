"""The one HTTP loop every backend client uses: timeouts, retries, clear errors.

```
HttpApi.call(call, method, path, idempotent=...)
  connection refused / DNS / connect timeout   -> retried (nothing reached the system)
  429                                          -> retried (the system refused to act)
  500 502 503 504, read timeouts, dropped      -> retried only for idempotent calls
  any other 4xx / 5xx, or retries used up      -> BackendError(call, message, status_code)
```

Waits follow `Retry-After` (seconds or an HTTP date, capped at 60 s) and otherwise
back off exponentially with jitter. A non-idempotent call (creating a task in a
system that cannot de-duplicate it) is never repeated once the request may have
reached the system: it fails with a `BackendError` saying so, rather than risk a
second task.

The `httpx.AsyncClient` opens on first use in the running event loop and closes
with `aclose()`; the next call opens a new one (so one configured backend can
serve several flow runs and event loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from peopletasks import __version__
from peopletasks.errors import BackendError
from peopletasks.timeutil import utcnow
from peopletasks.webhooks.retry import parse_retry_after

RETRYABLE = frozenset({429, 500, 502, 503, 504})
#: Failures that prove the request never reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAX_RETRY_AFTER = 60.0


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt + 1`: 0.5, 1, 2, 4 ... capped at 10, jittered."""
    return float(min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))


def error_message(response: httpx.Response) -> str:
    """What a failed response says, from the usual error body shapes (ours, Laravel,
    FastAPI, plain `message` / `error`), else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        parts: list[str] = []
        for key in ("message", "error", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                parts.append(value)
                break
            if value:
                parts.append(str(value))
                break
        errors = body.get("errors")
        if isinstance(errors, Mapping):
            for field, problems in errors.items():
                text = "; ".join(map(str, problems)) if isinstance(problems, list) else problems
                parts.append(f"{field}: {text}")
        if parts:
            return " ".join(parts)
    return response.text[:500] or response.reason_phrase or f"HTTP {response.status_code}"


class HttpApi:
    """One task system's HTTP API: base URL, headers, timeout and the retry policy."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        system: str,
        timeout: float = 30.0,
        retries: int = 4,
        max_connections: int = 100,
        message: Callable[[httpx.Response], str] = error_message,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.system = system
        self.retries = retries
        self.timeout = timeout
        self.max_connections = max_connections
        self._headers = {"User-Agent": f"peopletasks/{__version__}", **headers}
        self._message = message
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                verify=_tls_context(),
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=min(100, self.max_connections),
                ),
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(RuntimeError):  # its event loop is gone
                await client.aclose()

    async def call(
        self,
        call: str,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send; the JSON answer (None when empty). Raises `BackendError` naming `call`."""
        if timeout is not None:
            kwargs["timeout"] = timeout
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await self._http().request(method, path, **kwargs)
            except NOT_SENT as exc:
                if last:
                    raise BackendError(
                        call, f"cannot reach {self.system} at {self.base_url}: {exc!r}"
                    ) from exc
                await asyncio.sleep(backoff(attempt))
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    raise BackendError(
                        call,
                        f"no answer from {self.system} ({exc!r}); not repeated, because the "
                        "request may have been carried out (look for it there before retrying)",
                        outcome_unknown=True,
                    ) from exc
                if last:
                    raise BackendError(
                        call, f"no answer from {self.system} at {self.base_url}: {exc!r}"
                    ) from exc
                await asyncio.sleep(backoff(attempt))
                continue
            status = response.status_code
            may_retry = status == 429 or (idempotent and status in RETRYABLE)
            if may_retry and not last:
                wait = parse_retry_after(response.headers.get("retry-after"), utcnow())
                delay = backoff(attempt) if wait is None else min(wait, MAX_RETRY_AFTER)
                await asyncio.sleep(delay)
                continue
            if response.is_success:
                return response.json() if response.content else None
            message = self._message(response)
            unknown = status in RETRYABLE and status != 429 and not idempotent
            if unknown:
                message += (
                    "; not repeated, because the request may have been carried out "
                    "(look for it there before retrying)"
                )
            raise BackendError(call, message, status_code=status, outcome_unknown=unknown)
        raise AssertionError("unreachable")  # pragma: no cover


_TLS: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA bundle costs ~1 MB and
    several ms per client, and a process may wait on a thousand approvals."""
    global _TLS
    if _TLS is None:
        _TLS = httpx.create_ssl_context()
    return _TLS
