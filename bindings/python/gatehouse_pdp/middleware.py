"""Request authorization for Python web apps: an ASGI middleware and a
Django middleware over one decision function.

The caller's bearer token (``Authorization: Bearer <JWT>``) names the
principal; the app says what each request *is* with a ``resolve(method,
path)`` function returning ``{"action": {...}, "resource": {...}}`` (plus
optional ``context``), or ``None`` for a route that needs no decision. The
decision runs in-process (no network hop), with this host's clock.

Fail closed: no token is a 401; a Deny, or any failure to decide, is a 403;
the body is RFC 9457 problem+json with the decision's reason.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

from . import Pdp

Resolver = Callable[[str, str], Optional[dict]]

__all__ = ["decide", "GatehouseASGIMiddleware", "GatehouseDjangoMiddleware"]


def _problem(status: int, title: str, detail: str, reason: Optional[str] = None) -> bytes:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if reason is not None:
        body["reason"] = reason
    return json.dumps(body).encode()


def decide(
    pdp: Pdp, resolve: Resolver, method: str, path: str, authorization: Optional[str]
) -> Optional[tuple]:
    """``None`` to let the request through, else ``(status, problem body)``."""
    target = resolve(method, path)
    if target is None:
        return None
    if not authorization or not authorization.lower().startswith("bearer "):
        return 401, _problem(401, "Unauthorized", "a bearer token is required")
    token = authorization[7:].strip()
    answer = pdp.is_authorized_with_token(token, target, time.time())
    if answer.get("type") != "success":
        errors = answer.get("errors") or [{}]
        kind = errors[0].get("kind", "internal")
        return 403, _problem(403, "Forbidden", f"no decision: {errors[0].get('message', '')}", kind)
    if answer.get("decision") != "Allow":
        return 403, _problem(403, "Forbidden", "denied", answer.get("reason"))
    return None


class GatehouseASGIMiddleware:
    """ASGI middleware: ``app = GatehouseASGIMiddleware(app, pdp, resolve)``.
    Only HTTP requests are checked; lifespan and websockets pass through."""

    def __init__(self, app, pdp: Pdp, resolve: Resolver):
        self.app = app
        self.pdp = pdp
        self.resolve = resolve

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        auth = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                auth = value.decode("latin-1")
                break
        refusal = decide(self.pdp, self.resolve, scope.get("method", "GET"), scope.get("path", "/"), auth)
        if refusal is None:
            return await self.app(scope, receive, send)
        status, body = refusal
        headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class GatehouseDjangoMiddleware:
    """Django middleware. Settings: ``GATEHOUSE_PDP`` (a loaded :class:`Pdp`,
    or a callable returning one) and ``GATEHOUSE_RESOLVE`` (the resolver)."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        pdp = settings.GATEHOUSE_PDP
        self.pdp = pdp() if callable(pdp) and not isinstance(pdp, Pdp) else pdp
        self.resolve = settings.GATEHOUSE_RESOLVE

    def __call__(self, request):
        from django.http import HttpResponse

        refusal = decide(
            self.pdp, self.resolve, request.method, request.path, request.headers.get("Authorization")
        )
        if refusal is None:
            return self.get_response(request)
        status, body = refusal
        response = HttpResponse(body, status=status, content_type="application/problem+json")
        if status == 401:
            response["WWW-Authenticate"] = "Bearer"
        return response
