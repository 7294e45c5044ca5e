"""Access control for the service: an optional API key, checked before any request body is read.

With a key configured, every route but the public ones (`PUBLIC_PATHS`: /health, the search page
and its files, the OpenAPI docs) needs `Authorization: Bearer KEY`, the header the official
OpenAI client sends. One ASGI middleware does the check, so routes added later are covered
without anyone remembering to protect them.
"""

import hmac
import ipaddress

from fastapi import FastAPI

from .api_schemas import error_response

# Open without a key: the health probe, the page and its files, and the API's description
# (it says what the routes accept, which the published docs say too; it holds no data).
PUBLIC_PATHS = frozenset({"/", "/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
PUBLIC_PREFIXES = ("/static/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class BearerAuth:
    """ASGI middleware: every non-public request must carry `Authorization: Bearer <key>`.

    The key is compared with `hmac.compare_digest`, so the time taken does not say how much of
    a guess was right. A refusal is a 401 in OpenAI's error shape with `WWW-Authenticate: Bearer`.
    """

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or is_public(scope["path"]):
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        scheme, _, token = (header or b"").partition(b" ")
        if header is not None and scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return await self.app(scope, receive, send)
        if header is None:
            message, code = "missing API key: send the header 'Authorization: Bearer <key>'", "missing_api_key"
        elif scheme.lower() != b"bearer":
            message, code = "the Authorization header must use the Bearer scheme: 'Bearer <key>'", "invalid_api_key"
        else:
            message, code = "invalid API key", "invalid_api_key"
        response = error_response(401, message, "invalid_request_error", code=code,
                               headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def document_auth(app: FastAPI) -> None:
    """Mark the protected operations in the OpenAPI schema, so /docs can send the key."""
    build = app.openapi
    refused = {"description": "missing or wrong API key",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = build()  # caches itself in app.openapi_schema; completed in place
            spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer"}
            for path, operations in spec["paths"].items():
                if not is_public(path):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
                        operation["responses"]["401"] = refused
        return app.openapi_schema

    app.openapi = openapi


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to print when the service listens beyond this machine with no key, else None."""
    if api_key:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if loopback:
        return None
    return (f"searchr3: warning: serving on {host}, which is not a loopback address, without an API key: "
            f"anyone who can reach this port can search, add and delete documents. Set --api-key or "
            f"$SEARCHR3_API_KEY, or serve on 127.0.0.1.")
