"""The one error shape of affinity's HTTP edge: OpenSearch's own (`{"error": {"type", "reason"},
"status"}`), so an OpenSearch client reports a proxy error as it reports an engine error.
"""

from __future__ import annotations

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

    def response(self) -> Response:
        body = {"error": {"type": self.kind, "reason": self.reason}, "status": self.status}
        return Response(orjson.dumps(body), self.status, media_type=JSON_TYPE)
