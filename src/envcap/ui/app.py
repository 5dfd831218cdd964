"""The ``envcap ui`` web app: server-rendered pages over :mod:`.data`, and the API.

Pages are Jinja2 templates with autoescaping on, so every string from a run (a
parameter, a note, a metric name, a command, a label) is text on the page, never
markup. Chart data travels as JSON in ``<script type="application/json">`` blocks
(``tojson`` escapes ``<``, ``>``, ``&`` and quotes) that ``static/ui.js`` reads; no
page has an inline script or style, and every response carries a Content-Security-
Policy that allows scripts and styles from this server only.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import EnvcapError
from . import api, data
from ..store.base import StoreBackend

HERE = os.path.dirname(__file__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds the Content-Security-Policy and its companions to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                             autoescape=True)
    env.filters["value"] = _value_text
    env.filters["short"] = lambda s: (s or "").removeprefix("sha256:")[:12]
    env.filters["seconds"] = lambda s: "" if s is None else f"{s:.2f} s"
    env.globals["url"] = _url
    return env


def _value_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:.6g}"
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def _url(path: str, **params: Any) -> str:
    """A page address with its query (lists become repeated parameters)."""
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and item != "":
                pairs.append((key, str(item)))
    return path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")


def _page(template: str, work: Callable[[Request, Any], dict[str, Any]]) -> Callable[[Request], Any]:
    # A plain function, run in Starlette's thread pool (see api._endpoint).
    def endpoint(request: Request) -> Response:
        env = request.app.state.templates
        try:
            with request.app.state.open_store() as store:
                context = work(request, store)
        except EnvcapError as exc:
            html = env.get_template("error.html").render(message=str(exc), page=template)
            return HTMLResponse(html, status_code=api.status_of(exc))
        return HTMLResponse(env.get_template(template).render(**context))

    return endpoint


def _runs_page(request: Request, store: StoreBackend) -> dict[str, Any]:
    query = api.runs_query(request)
    listing = data.list_runs(store, **query)
    return {"page": "runs", "listing": listing}


def _run_page(request: Request, store: StoreBackend) -> dict[str, Any]:
    return {"page": "run", **data.run_page(store, request.path_params["run_id"])}


def _compare_page(request: Request, store: StoreBackend) -> dict[str, Any]:
    return {"page": "compare", **data.compare(store, request.query_params.getlist("run"))}


def _experiment_page(request: Request, store: StoreBackend) -> dict[str, Any]:
    found = data.experiment(store, **api.experiment_query(request))
    return {"page": "experiment", **found}


def _fleet_page(request: Request, store: StoreBackend) -> dict[str, Any]:
    return {"page": "fleet", **data.fleet(store, cluster_label=request.query_params.get("cluster_label") or "cluster")}


def _drift_page(request: Request, store: StoreBackend) -> dict[str, Any]:
    return {"page": "drift", **data.drift(store)}


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def create_app(open_store: Callable[[], Any], *, allowed_hosts: Sequence[str] = LOOPBACK_NAMES) -> ASGIApp:
    """The app over the store ``open_store()`` opens (once per request, read only).

    Nothing is cached between requests: each page is a query of the store's database. A
    request whose ``Host`` is not one of ``allowed_hosts`` gets 400 (starlette's
    TrustedHostMiddleware): a web page the user visits cannot read the store by pointing
    a name of its own at this address (DNS rebinding).
    """
    app = Starlette(routes=[
        Route("/", _page("runs.html", _runs_page)),
        Route("/runs/{run_id}", _page("run.html", _run_page)),
        Route("/compare", _page("compare.html", _compare_page)),
        Route("/experiment", _page("experiment.html", _experiment_page)),
        Route("/fleet", _page("fleet.html", _fleet_page)),
        Route("/drift", _page("drift.html", _drift_page)),
        *api.routes,
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ], middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)])
    app.state.open_store = open_store
    app.state.templates = _templates()
    return SecurityHeaders(app)


def store_opener(path: str | None) -> Callable[[], Any]:
    """Opens the store at ``path`` (default: the configured one), refusing to create one."""
    from ..store.embedded import Store

    Store(path, create=False).close()  # A missing store is an error now, not on the first request.
    return lambda: Store(path, create=False)
