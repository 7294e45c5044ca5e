"""Checks every request passes before the app reads it: the Host header, and the body's size.

Both are ASGI middlewares, like `auth.BearerAuth`, so routes added later are covered too.

- **Host allow-list.** A web page on another site can make a browser send requests to
  `http://127.0.0.1:8000` under its own domain name (DNS rebinding); the `Host` header is what
  gives it away, since it names the attacker's domain. So a Host header that is an IP address is
  accepted (such a page cannot send one), and a name only if it is a loopback name, the name the
  service is bound to, or configured (`serve.allowed_hosts`, which replaces the defaults).
- **Body size.** The body is read up to the limit and refused with 413 past it, so a huge body
  costs neither the memory nor the time of parsing it as JSON.
"""

from __future__ import annotations

import ipaddress

from .api_schemas import error_response

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(configured: list[str] | tuple[str, ...] | None, bound: str | None) -> frozenset[str]:
    """The host names accepted besides IP addresses: the configured list (`"*"` accepts any), else
    the loopback names plus `bound`."""
    if configured:
        return frozenset(h.lower().strip("[]") for h in configured)
    names = set(LOOPBACK_HOSTS)
    if bound and bound not in WILDCARD_BINDS:
        names.add(bound.lower().strip("[]"))
    return frozenset(names)


def host_name(header: bytes) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostGuard:
    """Refuse (400, code `invalid_host`) a request whose Host header is neither an IP address nor an
    allowed name."""

    def __init__(self, app, hosts: frozenset[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or "*" in self.hosts:
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope["headers"] if k == b"host"), b"")
        name = host_name(header)
        if name in self.hosts or is_ip(name):
            return await self.app(scope, receive, send)
        response = error_response(400, f"host {header.decode('latin-1')[:100]!r} is not served here; allowed: IP "
                                  f"addresses and {', '.join(sorted(self.hosts))} (serve.allowed_hosts)",
                                  "invalid_request_error", code="invalid_host")
        await response(scope, receive, send)


class BodyLimit:
    """Refuse (413, code `body_too_large`) a body over `max_bytes`, before any of it is parsed.

    A declared `Content-Length` over the limit is refused at once; otherwise the body is read in
    full up to the limit (a chunked body declares no length) and handed on only if it fits.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = error_response(413, f"request body over {self.max_bytes:,} bytes (serve.max_body_bytes)",
                                  "invalid_request_error", code="body_too_large", headers={"Connection": "close"})
        await response(scope, receive, send)
