"""The JSON API under ``/api``: the values the pages show (described by ``openapi.json``)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.errors import AmbiguousIdError, EnvcapError, NotFoundError, UsageError
from . import data
from ..store.base import StoreBackend

OPENAPI_FILE = os.path.join(os.path.dirname(__file__), "openapi.json")


def status_of(exc: EnvcapError) -> int:
    """The HTTP status of an envcap error: a bad request, nothing found, or the store's fault."""
    if isinstance(exc, (UsageError, AmbiguousIdError)):
        return 400
    if isinstance(exc, NotFoundError):
        return 404
    return 500


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not {raw!r}") from None


def runs_query(request: Request) -> dict[str, Any]:
    """The runs listing's arguments as a request gives them (the page's and the API's)."""
    q = request.query_params
    return {"where": q.getlist("where"), "sort": q.get("sort") or None,
            "offset": int_param(request, "offset", 0), "limit": int_param(request, "limit", 50)}


def _endpoint(work: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
    # A plain function: Starlette runs it in its thread pool, so a request that waits
    # for the database (or reads many records) does not hold up the others.
    def endpoint(request: Request) -> Response:
        try:
            with request.app.state.open_store() as store:
                result = work(request, store)
        except EnvcapError as exc:
            return JSONResponse({"error": str(exc)}, status_code=status_of(exc))
        return JSONResponse(result)

    return endpoint


def _runs(request: Request, store: StoreBackend) -> Any:
    return data.list_runs(store, **runs_query(request))


def _run(request: Request, store: StoreBackend) -> Any:
    return data.run_page(store, request.path_params["run_id"])


def _compare(request: Request, store: StoreBackend) -> Any:
    return data.compare(store, request.query_params.getlist("run"))


def experiment_query(request: Request) -> dict[str, Any]:
    """The experiment's arguments as a request gives them (the page's and the API's)."""
    q = request.query_params
    return {"where": q.getlist("where"), "metric": q.get("metric") or None, "resource": q.get("resource") or None,
            "method": q.get("method") or None, "goal": q.get("goal") or None}


def _importance(request: Request, store: StoreBackend) -> Any:
    return data.experiment(store, **experiment_query(request))


def _fleet(request: Request, store: StoreBackend) -> Any:
    return data.fleet(store, cluster_label=request.query_params.get("cluster_label") or "cluster")


def _drift(request: Request, store: StoreBackend) -> Any:
    return data.drift(store)


def _manifest(request: Request, store: StoreBackend) -> Any:
    return data.manifest_json(store, request.path_params["ref"])


async def openapi(request: Request) -> Response:
    with open(OPENAPI_FILE, encoding="utf-8") as fh:
        return JSONResponse(json.load(fh))


routes = [
    Route("/api/runs", _endpoint(_runs)),
    Route("/api/runs/{run_id}", _endpoint(_run)),
    Route("/api/compare", _endpoint(_compare)),
    Route("/api/importance", _endpoint(_importance)),
    Route("/api/fleet", _endpoint(_fleet)),
    Route("/api/drift", _endpoint(_drift)),
    Route("/api/manifests/{ref}", _endpoint(_manifest)),
    Route("/api/openapi.json", openapi),
]
