"""`guarded(action)`: a dashboard handler that runs only for staff who may take `action`."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from rewriter.auth import roles
from rewriter.web.context import refused, web
from rewriter.web.sessions import Refused, Staff

Handler = Callable[[Request, Staff], Awaitable[Response]]


def guarded(action: roles.Action) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            try:
                staff = await web(request).gate.require(request, action)
                return await handler(request, staff)
            except Refused as exc:
                return refused(request, exc)

        return run

    return wrap
