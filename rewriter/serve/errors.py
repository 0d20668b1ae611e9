"""The one JSON response and error shape of affinity's HTTP edge (the proxy's search handlers,
health, and POST /events): OpenSearch's own error body (`{"error": {"type", "reason"},
"status"}`), so an OpenSearch client reports an affinity error as it reports an engine error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

JSON_TYPE = "application/json; charset=UTF-8"


class ProxyError(Exception):
    """An error the proxy answers itself, shaped like OpenSearch's error bodies."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason

    def response(self, headers: Mapping[str, str] | None = None) -> Response:
        return error_response(self.status, self.kind, self.reason, headers)


def json_response(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, media_type=JSON_TYPE, headers=headers)


def error_response(
    status: int, kind: str, reason: str, headers: Mapping[str, str] | None = None
) -> Response:
    """OpenSearch's error body: `type` says which error, `reason` what happened and what to do."""
    return json_response(
        {"error": {"type": kind, "reason": reason}, "status": status}, status, headers
    )
