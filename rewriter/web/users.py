"""The Users page (privacy role): a user's decoded profile and segments, and export, delete
and opt out, each confirmed by typing the user id again. The work is ingest/user_ops.py's,
the same as `affinity profile show` and `affinity user export|delete|opt-out`. The audit log
records the user's pseudonym, never the raw id."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter.ingest import user_ops
from rewriter.ingest.event_files import FoldProfileError, fold_boost
from rewriter.web.context import UI, Web, page, web
from rewriter.web.guard import guarded
from rewriter.web.sessions import Refused, Staff

MAX_USER_ID = 512


def _user(value: object) -> str:
    user = str(value or "").strip()
    if not user or len(user) > MAX_USER_ID:
        raise Refused(400, f"user: give a user id of 1-{MAX_USER_ID} characters")
    return user


def _boost(w: Web) -> Any:
    try:
        return fold_boost(w.settings, None, None)
    except FoldProfileError as exc:
        raise Refused(503, str(exc)) from None


def _profile(w: Web, user: str) -> dict[str, Any] | None:
    source = user_ops.read_profile(w.es, w.settings, user_ops.pseudonym(w.settings, user))
    return None if source is None else user_ops.describe(source, _boost(w), time.time(), 10)


@guarded("privacy")
async def users_page(request: Request, staff: Staff) -> Response:
    w = web(request)
    raw = request.query_params.get("user", "").strip()
    values: dict[str, Any] = {"user": raw, "done": request.query_params.get("done", "")}
    if raw:
        user = _user(raw)
        values["profile"] = await run_in_threadpool(_profile, w, user)
        values["pseudonym"] = user_ops.pseudonym(w.settings, user)
    return page(request, "users.html", staff, **values)


async def _confirmed(request: Request) -> str:
    form = await request.form()
    user = _user(form.get("user"))
    if str(form.get("confirm", "")).strip() != user:
        raise Refused(400, "confirm: type the user id again to confirm")
    return user


@guarded("privacy")
async def user_export(request: Request, staff: Staff) -> Response:
    w = web(request)
    user = await _confirmed(request)
    data = await run_in_threadpool(user_ops.export, w.es, w.settings, user)
    pseudo = user_ops.pseudonym(w.settings, user)
    await run_in_threadpool(w.audit.record, staff.name, "user_export", pseudo)
    body = json.dumps({"user_id": user, **data}, indent=2, ensure_ascii=False, default=str)
    disposition = f'attachment; filename="user-{pseudo[:12]}.json"'
    return Response(
        body, media_type="application/json", headers={"content-disposition": disposition}
    )


@guarded("privacy")
async def user_delete(request: Request, staff: Staff) -> Response:
    w = web(request)
    user = await _confirmed(request)
    report = await run_in_threadpool(user_ops.delete, w.es, w.settings, _boost(w), user)
    note = f"deleted {report.deleted}; left {report.remaining}"
    await run_in_threadpool(w.audit.record, staff.name, "user_delete", report.pseudonym, note)
    return page(request, "users.html", staff, user="", done=f"user deleted: {note}")


@guarded("privacy")
async def user_opt_out(request: Request, staff: Staff) -> Response:
    w = web(request)
    user = await _confirmed(request)
    pseudo = await run_in_threadpool(user_ops.opt_out, w.es, w.settings, _boost(w), user)
    await run_in_threadpool(w.audit.record, staff.name, "user_opt_out", pseudo)
    return page(request, "users.html", staff, user="", done="user opted out")


ROUTES = [
    Route(f"{UI}/users", users_page, methods=["GET"]),
    Route(f"{UI}/users/export", user_export, methods=["POST"]),
    Route(f"{UI}/users/delete", user_delete, methods=["POST"]),
    Route(f"{UI}/users/opt-out", user_opt_out, methods=["POST"]),
]
