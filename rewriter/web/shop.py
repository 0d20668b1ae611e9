"""The demo storefront (`/_affinity/shop/`): a search page whose JavaScript (static/shop.js)
is the reference for how a shop sends `X-User-Id`, `query_id` and click events.

With AFFINITY_AUTH required the page needs a staff sign-in (any role), and hands its
JavaScript short-lived user tokens (`POST /_affinity/shop/token`) for the demo shopper picked,
never a key. AFFINITY_SHOP_USERS (comma-separated raw ids) fills the shopper list.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter.auth import tokens
from rewriter.serve.errors import error_response, json_response
from rewriter.web.context import SHOP, STATIC, TEMPLATES, refused, web
from rewriter.web.sessions import Refused

MAX_USER_ID = 512


async def shop_page(request: Request) -> Response:
    w = web(request)
    try:
        staff = await w.gate.require(request, "read") if w.gate.required else None
    except Refused as exc:
        return refused(request, exc)
    users = list(w.settings.shop_users)
    context = {
        "static": STATIC,
        "index": request.query_params.get("index") or w.settings.indices.catalog,
        "auth_required": w.gate.required,
        "csrf": staff.csrf if staff else "",
        "users": users,
    }
    return TEMPLATES.TemplateResponse(request, "shop.html", context)


async def user_token(request: Request) -> Response:
    """A user token for the demo shopper (signed-in staff only, with the form's CSRF token)."""
    w = web(request)
    try:
        await w.gate.require(request, "read")
    except Refused as exc:
        return error_response(exc.status, "affinity_refused", exc.message)
    user = str((await request.form()).get("user", "")).strip()
    if not user or len(user) > MAX_USER_ID:
        return error_response(
            400, "affinity_bad_user", f"user: give a user id of 1-{MAX_USER_ID} characters"
        )
    token = tokens.issue_user_token(w.secret, user)
    return json_response({"token": token, "expires_in": tokens.USER_TOKEN_TTL_S})


ROUTES = [
    Route(f"{SHOP}/", shop_page, methods=["GET"]),
    Route(f"{SHOP}/token", user_token, methods=["POST"]),
]
