"""The proxy's async HTTP connection pool to OpenSearch (aiohttp: its C parser costs a
fraction of a pure-Python client per request, which is most of the proxy's overhead).

Errors become two exceptions a handler can act on: EngineTimeout (answer 504) and
EngineDown (answer 503). The pool is created lazily inside the running event loop and
re-created if the loop changes (tests run each app in a fresh loop).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp


class EngineError(Exception):
    """OpenSearch could not be reached or did not answer."""


class EngineTimeout(EngineError):
    pass


class EngineDown(EngineError):
    pass


@dataclass(frozen=True)
class EngineResponse:
    status: int
    content: bytes
    content_type: str


class EngineHTTP:
    """A pooled keep-alive connection to one OpenSearch endpoint."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        user: str | None = None,
        password: str | None = None,
        verify: bool = True,
        ca_certs: str | None = None,
        pool_size: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self.auth = aiohttp.BasicAuth(user, password or "") if user else None
        self.pool_size = pool_size
        self._ssl: ssl.SSLContext | bool = True
        if ca_certs:
            self._ssl = ssl.create_default_context(cafile=ca_certs)
        elif not verify:
            self._ssl = False
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.timeouts = 0
        """Requests that got no answer in time (for /_affinity/metrics)."""
        self.unavailable = 0
        """Requests that could not reach the engine."""

    def _pool(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                self.base_url,
                connector=connector,
                timeout=self.timeout,
                auth=self.auth,
                # No Accept-Encoding: OpenSearch then skips gzipping every response (0.27 ms
                # of engine CPU per search, side by side), which the proxy would only inflate.
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            self._loop = loop
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> EngineResponse:
        kwargs: dict = {"params": dict(params or {}), "data": content}
        kwargs["headers"] = {
            "content-type": "application/json",
            "accept": "application/json",  # else OpenSearch answers in the request's type
            **(headers or {}),
        }
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._pool().request(method, path, **kwargs) as response:
                body = await response.read()
                ctype = response.headers.get("content-type", "application/json")
                return EngineResponse(response.status, body, ctype)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            self.timeouts += 1
            raise EngineTimeout(f"no answer from {self.base_url} in time") from exc
        except aiohttp.ClientError as exc:
            self.unavailable += 1
            raise EngineDown(f"{self.base_url}: {exc.__class__.__name__}: {exc}") from exc

    async def get(
        self, path: str, *, params: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> EngineResponse:
        return await self.request("GET", path, params=params, timeout=timeout)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
