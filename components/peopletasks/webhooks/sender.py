"""The webhook sender: what a delivery's request looks like, handed to a transport.

`Sender(transport)` POSTs deliveries (and GETs what a delivery needs, e.g. a Prefect
flow run) through a `Transport` (transport.py): the service's `HTTPTransport`
(http.py) or, in tests about what happens with an answer, a `MockTransport`. The
sender's part is the same for both: the URL normalised (a stored URL that is not
printable ASCII is percent-encoded and its host IDNA-encoded, as at registration;
one that cannot be is `UnsendableRequest`), the `user-agent`, and the cap on how
much of an answer is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from peopletasks.webhooks.targets import normalise_url
from peopletasks.webhooks.transport import Reply, Request, Transport, UnsendableRequest

__all__ = ["Sender"]

#: A URL the transport can take as it is (what registration stores is always this).
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")


class Sender:
    """`async with Sender(HTTPTransport(allow_private=False)) as sender:
    reply = await sender.post(url, body, headers)`."""

    def __init__(
        self,
        transport: Transport,
        *,
        body_cap: int = 4096,
        user_agent: str = "peopletasks-webhooks",
    ) -> None:
        self.transport = transport
        self.body_cap = body_cap
        self.user_agent = user_agent

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] = {}) -> Reply:
        """POST `body`; the answer (status, headers, capped body). Never follows redirects.

        Raises `TargetRefused` (nothing was sent), `SendTimeout`, `UnsendableRequest`
        or `SendError`.
        """
        return await self.transport.handle(self._request("POST", url, body, headers, None))

    async def get(
        self, url: str, headers: Mapping[str, str] = {}, *, body_cap: int | None = None
    ) -> Reply:
        """GET `url` under the same rules as `post`; `body_cap` overrides the sender's cap."""
        return await self.transport.handle(self._request("GET", url, None, headers, body_cap))

    def _request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        body_cap: int | None,
    ) -> Request:
        if not _PRINTABLE_ASCII.fullmatch(url):
            try:
                url = normalise_url(url)
            except ValueError as exc:
                raise UnsendableRequest(f"cannot send to {url[:200]!r}: {exc}") from None
        if not any(name.lower() == "user-agent" for name in headers):
            headers = {**headers, "user-agent": self.user_agent}
        cap = self.body_cap if body_cap is None else body_cap
        return Request(method, url, headers, body, cap)
