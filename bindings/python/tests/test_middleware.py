"""The ASGI and Django middleware, driven through their real protocols (an
ASGI call with receive/send; Django's test client through the full
middleware stack), with tokens signed now and checked against this host's
clock: Allow passes, every other outcome is refused, fail closed."""

import asyncio
import json
import subprocess
import time

import pytest

from conftest import eddsa_token, pdp_bin, realm_with_test_keys
from gatehouse_pdp import Pdp
from gatehouse_pdp.middleware import GatehouseASGIMiddleware

ISS = "https://gatehouse.local/realms/default"
AUD = "gatehouse-demo-client"


def token(sub: str, **over) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iss": ISS, "aud": AUD, "token_use": "id", "iat": now - 60, "exp": now + 3600}
    claims.update(over)
    return eddsa_token(claims)


def resolve(method: str, path: str):
    """GET /docs/<id> reads a document; /bad names an unknown action; the rest is open."""
    if path.startswith("/docs/"):
        action = "readDocument" if method == "GET" else "editDocument"
        return {"action": {"type": "Action", "id": action}, "resource": {"type": "Document", "id": path[6:]}}
    if path == "/bad":
        return {"action": {"type": "Action", "id": "fly"}, "resource": {"type": "Document", "id": "x"}}
    return None


@pytest.fixture(scope="module")
def pdp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gatehouse-mw")
    out = tmp / "bundle.tar.gz"
    subprocess.run([pdp_bin(), "bundle", "build", "--dir", str(realm_with_test_keys(tmp / "realm")), "-o", str(out)],
                   check=True, capture_output=True)
    return Pdp.load(out.read_bytes(), {"dev": True})


# Who gets what, from the reference policies and users.
CASES = [
    ("GET", "/health", None, 200, None),
    ("GET", "/docs/design-doc", None, 401, None),
    ("GET", "/docs/design-doc", "Basic abc", 401, None),
    ("GET", "/docs/design-doc", lambda: "Bearer " + token("alice"), 200, None),
    ("GET", "/docs/design-doc", lambda: "Bearer " + token("dave"), 403, "user_state:Suspended"),
    ("GET", "/docs/design-doc", lambda: "Bearer " + token("nobody"), 403, "token:unknown_user"),
    ("GET", "/docs/design-doc", lambda: "Bearer " + token("alice", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), 403, "token:expired"),
    ("GET", "/docs/design-doc", lambda: "Bearer not.a.token", 403, None),
    ("GET", "/bad", lambda: "Bearer " + token("alice"), 403, "invalid_request"),
]


def asgi_call(app, method, path, auth):
    headers = [(b"authorization", auth.encode())] if auth else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.parametrize("method,path,auth,status,reason", CASES)
def test_asgi(pdp, method, path, auth, status, reason):
    app = GatehouseASGIMiddleware(hello, pdp, resolve)
    got, headers, body = asgi_call(app, method, path, auth() if callable(auth) else auth)
    assert got == status, body
    if status == 200:
        assert body == b"hello"
    else:
        assert headers[b"content-type"] == b"application/problem+json"
        problem = json.loads(body)
        assert problem["status"] == status
        if reason:
            assert problem["reason"] == reason, problem
    if status == 401:
        assert headers[b"www-authenticate"] == b"Bearer"


@pytest.fixture(scope="module")
def django_client(pdp):
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["gatehouse_pdp.middleware.GatehouseDjangoMiddleware"],
            GATEHOUSE_PDP=pdp,
            GATEHOUSE_RESOLVE=resolve,
        )
        django.setup()
    from django.test import Client

    return Client()


def _ok(request, **kwargs):
    from django.http import HttpResponse

    return HttpResponse("hello")


def _urlpatterns():
    try:
        from django.urls import re_path
    except ImportError:
        return []
    return [re_path(r"^.*$", _ok)]


urlpatterns = _urlpatterns()


@pytest.mark.parametrize("method,path,auth,status,reason", CASES)
def test_django(django_client, method, path, auth, status, reason):
    headers = {}
    if auth:
        headers["HTTP_AUTHORIZATION"] = auth() if callable(auth) else auth
    response = django_client.generic(method, path, **headers)
    assert response.status_code == status, response.content
    if status == 200:
        assert response.content == b"hello"
    else:
        assert response["Content-Type"] == "application/problem+json"
        if reason:
            assert json.loads(response.content)["reason"] == reason
