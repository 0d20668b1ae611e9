"""Sign-in, sign-out and the audit log page."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from rewriter.auth import tokens
from rewriter.web.context import UI, page, web, when
from rewriter.web.guard import guarded
from rewriter.web.sessions import COOKIE, Staff


def _next(value: object) -> str:
    target = str(value or "")
    return target if target.startswith(f"{UI}/") and "//" not in target else f"{UI}/boost"


async def login_form(request: Request) -> Response:
    return page(request, "login.html", None, next=_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    w = web(request)
    form = await request.form()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    target = _next(form.get("next"))
    client = request.client.host if request.client else "?"
    keys = (f"name:{name}", f"client:{client}")
    if w.gate.limiter.blocked(*keys):
        message = "too many failed sign-ins: wait five minutes and try again"
        return page(request, "login.html", None, 429, error=message, next=target)
    record = await run_in_threadpool(w.gate.store.login, name, password)
    if record is None:
        w.gate.limiter.failed(*keys)
        await run_in_threadpool(w.audit.record, name[:64] or "-", "login_failed", "dashboard")
        message = "wrong name or password, or the account is disabled"
        return page(request, "login.html", None, 401, error=message, next=target)
    await run_in_threadpool(w.audit.record, record.name, "login", "dashboard")
    response = RedirectResponse(target, 303)
    response.set_cookie(
        COOKIE,
        w.gate.new_session(record.name, record.role),
        max_age=tokens.SESSION_TTL_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/_affinity/",
    )
    return response


@guarded("read")
async def logout(request: Request, staff: Staff) -> Response:
    response = RedirectResponse(f"{UI}/login", 303)
    response.delete_cookie(COOKIE, path="/_affinity/")
    return response


@guarded("read_audit")
async def audit_page(request: Request, staff: Staff) -> Response:
    entries = await run_in_threadpool(web(request).audit.entries)
    rows = [{**e.__dict__, "when": when(e.at)} for e in entries]
    return page(request, "audit.html", staff, entries=rows)


async def home(request: Request) -> Response:
    return RedirectResponse(f"{UI}/boost", 303)


ROUTES = [
    Route(f"{UI}/", home, methods=["GET"]),
    Route(f"{UI}/login", login_form, methods=["GET"]),
    Route(f"{UI}/login", login, methods=["POST"]),
    Route(f"{UI}/logout", logout, methods=["POST"]),
    Route(f"{UI}/audit", audit_page, methods=["GET"]),
]
