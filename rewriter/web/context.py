"""What every dashboard and storefront handler needs, built once per process (`web/app.py`),
and the helpers that render a page or a refusal."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from rewriter import config
from rewriter.auth.audit import AuditLog
from rewriter.boost.profile import BoostProfile
from rewriter.boost.reload import BoostRegistry
from rewriter.web.sessions import Gate, Refused, Staff
from rewriter.web.versions import VersionStore

UI = "/_affinity/ui"
SHOP = "/_affinity/shop"
STATIC = f"{UI}/static"
HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes .html


@dataclass
class Web:
    settings: config.Settings
    es: OpenSearch
    gate: Gate
    versions: VersionStore
    audit: AuditLog
    secret: bytes

    def served(self, request: Request) -> dict[str, BoostProfile]:
        return dict(request.app.state.proxy.boost_profiles)

    def served_errors(self, request: Request) -> list[str]:
        return list(request.app.state.proxy.boost_errors)

    def registry(self, request: Request) -> BoostRegistry:
        return request.app.state.boost_registry


def web(request: Request) -> Web:
    return request.app.state.web


def page(
    request: Request, template: str, staff: Staff | None, http_status: int = 200, **values: Any
) -> Response:
    w = web(request)
    context = {
        "base": UI,
        "static": STATIC,
        "staff": staff,
        "auth_required": w.gate.required,
        "flash": request.query_params.get("flash"),
        **values,
    }
    return TEMPLATES.TemplateResponse(request, template, context, status_code=http_status)


def refused(request: Request, exc: Refused) -> Response:
    """401 on a page: to the sign-in form; otherwise the refusal, as a page."""
    if exc.status == 401 and request.method == "GET":
        return RedirectResponse(f"{UI}/login?next={request.url.path}", 303)
    return page(request, "error.html", None, exc.status, code=exc.status, message=exc.message)


def when(ts: float) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
