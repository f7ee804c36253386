"""Where webhooks may point: checked at registration and again at every connection.

The threat: anyone who may register a webhook chooses the URL the service will
POST to. Without care that makes the service a proxy into its own network: cloud
metadata (`169.254.169.254`), the database on `10.x`, an admin port on `127.0.0.1`,
reached directly, through a redirect, through a proxy taken from the environment,
or through a name that resolved to a public address when it was checked and to a
private one when it is connected to (DNS rebinding).

The design:

* `check_target_url` refuses URLs that are not plain `http(s)://host[:port]/...`
  (no user-info, no whitespace, no odd ports) before anything is stored, and gives
  the URL as it is stored and sent (`normalise_url`: IDNA host, path and query
  percent-encoded per the WHATWG URL Standard).
* `check_target_resolves` resolves the host at registration time, for a clear
  error early; it is advisory only, since DNS answers change. `target_check` is
  both, as registration (domain/webhooks.py) asks them.
* The real guard is in the HTTP transport (`http.py`): every connection it opens
  resolves the host itself (`resolve_public`), is refused when ANY resolved address
  is not public (`is_public_address`), and then goes to the checked address
  literal, so the address connected to is the address checked. TLS still verifies
  the certificate for, and sends SNI of, the URL's host name.
* The transport never follows redirects, ignores proxy settings from the
  environment, and reads a bounded prefix of the answer.

`PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS=true` (``allow_private=True``) lifts the address
check, for local stacks and tests whose receivers live on private addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import idna

from peopletasks.errors import TargetRefused, ValidationFailed

if TYPE_CHECKING:
    from peopletasks.domain.webhooks import TargetCheck

__all__ = [
    "MAX_URL_LENGTH",
    "TargetRefused",
    "check_target_resolves",
    "check_target_url",
    "is_public_address",
    "normalise_url",
    "resolve_public",
    "target_check",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2000
#: How long registration waits for DNS before refusing the URL.
RESOLVE_TIMEOUT_SECONDS = 5.0
_ALLOW_HINT = "set PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS=true to allow"

_net4 = ipaddress.IPv4Network
_net6 = ipaddress.IPv6Network
_SHARED_V4 = _net4("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
_DOCUMENTATION_V4 = (
    _net4("192.0.2.0/24"),
    _net4("198.51.100.0/24"),
    _net4("203.0.113.0/24"),
)
_BENCHMARK_V4 = _net4("198.18.0.0/15")
_DOCUMENTATION_V6 = (_net6("2001:db8::/32"), _net6("3fff::/20"))
_IPV4_COMPATIBLE_V6 = _net6("::/96")  # deprecated by RFC 4291
_NAT64_V6 = _net6("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL_V6 = _net6("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_TEREDO_V6 = _net6("2001::/32")
_SITE_LOCAL_V6 = _net6("fec0::/10")
_UNIQUE_LOCAL_V6 = _net6("fc00::/7")


# --- URLs -------------------------------------------------------------------------------------


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed.field("url", message)


def _is_forbidden_char(ch: str) -> bool:
    # Whitespace, C0/C1 controls, DEL, and invisible format characters (zero-width etc.).
    return ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf"}


def normalise_url(url: str) -> str:
    """`url` as it is stored and sent, serialised per the WHATWG URL Standard.

    Scheme and host lower-case; a host that is not ASCII in IDNA (UTS #46, as
    browsers do: `Bücher.example` -> `xn--bcher-kva.example`); the path, query and
    fragment percent-encoded with WHATWG's sets (a character outside ASCII as the
    `%XX` of its UTF-8 bytes, and the ASCII ones WHATWG encodes, like `"`, `<`, `^`
    in a path or `'` in a query; an existing `%XX` kept); dot segments (`..`,
    `%2e%2e`) resolved; an empty path as `/`; a default port dropped. Numeric IPv4
    forms other than dotted decimal (`0x7f.1`) are left to the resolver, whose
    answer the address check judges. Raises `ValueError` when `url` cannot be parsed.
    """
    try:
        parsed = httpx.URL(_prepare(url))
    except httpx.InvalidURL as exc:
        raise ValueError(str(exc)) from None
    # httpx encodes with WHATWG's sets but for '^' in a path and "'" in a query.
    path, question, query = parsed.raw_path.decode("ascii").partition("?")
    raw_path = _whatwg_path(path) + question + query.replace("'", "%27")
    return str(parsed.copy_with(raw_path=raw_path.encode("ascii")))


_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def _whatwg_path(path: str) -> str:
    path = path.replace("^", "%5E")
    if "%2e" not in path.lower():  # no dot segments (`_prepare` spelled them so)
        return path or "/"
    segments = path.split("/")[1:]
    kept: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in _DOUBLE_DOT:
            if kept:
                kept.pop()
            if last:
                kept.append("")
        elif lowered in _SINGLE_DOT:
            if last:
                kept.append("")
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


_DOT_SEGMENTS = {".": "%2e", "..": "%2e%2e"}


def _prepare(url: str) -> str:
    """`url` ready for httpx: a host that is not ASCII in IDNA (httpx alone would
    refuse what UTS #46 maps, e.g. full-width letters), and dot segments spelled
    `%2e`, so that they are resolved once, as WHATWG does (`_whatwg_path`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if not authority.isascii():
        userinfo, at, hostport = authority.rpartition("@")
        host, colon, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValueError(f"invalid host name {host!r}: {exc}") from None
        authority = f"{userinfo}{at}{host}{colon}{port}"
    cut = min((i for i in map(tail.find, "?#") if i >= 0), default=len(tail))
    path = tail[:cut]
    if "." in path:
        path = "/".join(_DOT_SEGMENTS.get(segment, segment) for segment in path.split("/"))
    return f"{scheme}{sep}{authority}{path}{tail[cut:]}"


def check_target_url(url: str) -> str:
    """The URL, normalised (`normalise_url`), or `ValidationFailed` on `url`.

    Accepts only absolute `http://` / `https://` URLs with a host, an optional port in
    1..65535 and no user-info. The URL is parsed by httpx, the parser that will send it.
    """
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"must be at most {MAX_URL_LENGTH} characters long (got {len(url)})")
    if any(_is_forbidden_char(ch) for ch in url):
        raise _refuse("must not contain whitespace or control characters")
    if "\\" in url:
        # URL parsers disagree about backslashes (WHATWG treats them as '/').
        raise _refuse("must not contain backslashes")
    try:
        parsed = httpx.URL(_prepare(url))
    except (httpx.InvalidURL, ValueError) as exc:
        raise _refuse(f"is not a valid URL: {exc}") from None
    if parsed.scheme not in {"http", "https"}:
        got = parsed.scheme or "none"
        raise _refuse(f"must be an absolute http:// or https:// URL (scheme: {got})")
    # The authority as the standard library sees it: any '@' means user-info, even empty.
    try:
        netloc = urlsplit(url).netloc
    except ValueError as exc:
        raise _refuse(f"is not a valid URL: {exc}") from None
    if parsed.userinfo or "@" in netloc:
        raise _refuse("must not contain a user name or password (user:pass@)")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise _refuse("must name a host")
    _check_host(host)
    _check_port(netloc, parsed.port)
    normalised = normalise_url(url)
    if len(normalised) > MAX_URL_LENGTH:
        raise _refuse(
            f"must be at most {MAX_URL_LENGTH} characters long once percent-encoded "
            f"(got {len(normalised)})"
        )
    return normalised


def _check_host(host: str) -> None:
    if ":" in host:  # an IPv6 literal (httpx has removed the brackets)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse(f"has an invalid IPv6 address: {host}") from None
        if "%" in host:
            raise _refuse("must not use an IPv6 zone index")
        return
    name = host.removesuffix(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or any(not label or len(label) > 63 for label in labels)
        or any(not (ch.isascii() and (ch.isalnum() or ch in "-_")) for ch in name.replace(".", ""))
    ):
        raise _refuse(f"has an invalid host name: {host}")


def _check_port(netloc: str, port: int | None) -> None:
    # httpx accepts any integer (0, 99999, '+80'); insist on 1..65535 written in ASCII digits.
    hostport = netloc.rpartition("@")[2]
    raw = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    _, colon, text = raw.rpartition(":")
    if colon and text and not (text.isascii() and text.isdigit()):
        raise _refuse(f"has an invalid port: {text!r}")
    if port is not None and not 1 <= port <= 65535:
        raise _refuse(f"has an invalid port: {port} (must be 1..65535)")


# --- addresses --------------------------------------------------------------------------------


def _refusal_reason(ip: IPAddress) -> str | None:
    """None when `ip` is public, else what it is ('a private address', ...)."""
    if isinstance(ip, ipaddress.IPv6Address):
        return _refusal_reason_v6(ip)
    return _refusal_reason_v4(ip)


def _refusal_reason_v4(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _SHARED_V4:
        return "a shared (carrier-grade NAT) address"
    if any(ip in net for net in _DOCUMENTATION_V4):
        return "a documentation address"
    if ip in _BENCHMARK_V4:
        return "a benchmarking address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-global address"
    return None


def _embedded(prefix: str, inner: str | None) -> str | None:
    return None if inner is None else f"{prefix} form of {inner}"


def _refusal_reason_v6(ip: ipaddress.IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d reaches a.b.c.d on dual-stack sockets
        return _embedded("an IPv4-mapped", _refusal_reason_v4(ip.ipv4_mapped))
    if ip in _IPV4_COMPATIBLE_V6:
        return "an IPv4-compatible address (deprecated)"
    if ip in _NAT64_V6:  # a NAT64 gateway forwards to the embedded IPv4 address
        inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        return _embedded("a NAT64", _refusal_reason_v4(inner))
    if ip in _NAT64_LOCAL_V6:
        return "a local-use NAT64 address"
    if ip.sixtofour is not None:
        return _embedded("a 6to4", _refusal_reason_v4(ip.sixtofour))
    if ip in _TEREDO_V6:
        return "a Teredo address"
    if ip.is_link_local:
        return "a link-local address"
    if ip in _SITE_LOCAL_V6:
        return "a site-local address"
    if ip in _UNIQUE_LOCAL_V6:
        return "a unique-local address"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip in net for net in _DOCUMENTATION_V6):
        return "a documentation address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-global address"
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    False for private, loopback, link-local, multicast, reserved, unspecified, shared
    (100.64/10), documentation and benchmarking ranges, site-local (fec0::/10),
    unique-local (fc00::/7), Teredo, deprecated IPv4-compatible IPv6 (::/96); IPv4
    addresses embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`,
    6to4 `2002::/16`) are judged by the embedded IPv4 address.
    """
    return _refusal_reason(ip) is None


def _parse_address(address: str) -> IPAddress:
    return ipaddress.ip_address(address.partition("%")[0])  # drop an IPv6 zone index


def _refusal_message(host: str, address: str, reason: str) -> str:
    if _parse_address(address) == _try_parse(host):
        return f"refused: {host} is {reason}; {_ALLOW_HINT}"
    return f"refused: {host} resolves to {address}, {reason}; {_ALLOW_HINT}"


def _try_parse(host: str) -> IPAddress | None:
    try:
        return _parse_address(host)
    except ValueError:
        return None


async def resolve_public(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses `host` resolves to (literal IPs too), in the resolver's order.

    Raises `TargetRefused` when the name cannot be resolved, or, unless
    `allow_private`, when ANY of its addresses is not public.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc}") from None
    addresses = list(
        dict.fromkeys(
            str(sockaddr[0])
            for family, _, _, _, sockaddr in infos
            if family in (socket.AF_INET, socket.AF_INET6)
        )
    )
    if not addresses:
        raise TargetRefused(f"cannot resolve {host}: no IPv4 or IPv6 address")
    if not allow_private:
        for address in addresses:
            reason = _refusal_reason(_parse_address(address))
            if reason is not None:
                raise TargetRefused(_refusal_message(host, address, reason))
    return addresses


async def check_target_resolves(url: str, *, allow_private: bool) -> None:
    """At registration: `ValidationFailed` on `url` when its host is refused or unresolvable.

    With `allow_private` nothing is resolved at all (local stacks use names that may
    only resolve inside their own network). Advisory: every connection is checked again.
    """
    if allow_private:
        return
    parsed = httpx.URL(check_target_url(url))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.raw_host.decode("ascii")
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            await resolve_public(host, port, allow_private=False)
    except TargetRefused as exc:
        raise _refuse(str(exc)) from None
    except TimeoutError:
        raise _refuse(f"cannot resolve {host}: timed out") from None


def target_check(*, allow_private: bool, prefect_apis: Iterable[str] = ()) -> TargetCheck:
    """Registration's check: an http(s) URL whose host resolves to public addresses
    only (unless allowed), or, for a Prefect resume (`prefect.apiUrl`), one of the
    Prefect APIs the operator named (PEOPLETASKS_PREFECT_API_URL), wherever it is;
    gives the URL normalised, as it is to be stored."""
    named = frozenset(check_target_url(url).rstrip("/") for url in prefect_apis)

    async def check(url: str, field: str) -> str:
        try:
            normalised = check_target_url(url)
            if field == "prefect.apiUrl" and normalised.rstrip("/") in named:
                return normalised
            await check_target_resolves(normalised, allow_private=allow_private)
        except ValidationFailed as exc:
            message = exc.details[0]["message"] if exc.details else exc.message
            if field == "prefect.apiUrl":
                message += (
                    "; to resume flow runs on your own Prefect server, name its API in "
                    "PEOPLETASKS_PREFECT_API_URL (e.g. http://prefect:4200/api)"
                )
            raise ValidationFailed.field(field, message) from None
        return normalised

    return check
