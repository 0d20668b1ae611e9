"""`GET /_affinity/metrics`: what an operator watches, in the Prometheus text format.

Counted as requests pass (one registry per app, so test apps never share numbers):

- `affinity_requests_total{endpoint, mode, status}` and the latency histogram
  `affinity_request_seconds{endpoint, mode}`: endpoint is the route's path template
  (`/{index}/_search`), mode the search's personalization (`affinity`, `popularity`, `none`;
  `-` for everything that is not a search);
- `affinity_events_rejected_total{reason}`: events of `POST /events` refused, by the field
  that failed (`engine` when OpenSearch refused a valid event).

Read when scraped, from the objects that own them:

- `affinity_engine_errors_total{kind}` (`timeout`, `unavailable`): the proxy's engine pool;
- `affinity_profile_cache_{hits,misses,evictions}_total`, `..._bytes`, `..._entries`, and the
  change feed's `affinity_change_feed_{lag_seconds,trusted}`;
- `affinity_events_pending` (accepted, not yet written) and `affinity_fold_lag_events`
  (written, not yet folded into profiles): the events writer's queues;
- `affinity_impressions_queued`, `affinity_impressions_{written,dropped,failed}_total`.

The README's "What to alert on" says which of these matter.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/_affinity/metrics"
BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
SCOPE_KEY = "affinity.mode"


class Metrics:
    """One app's registry and its request-time metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "affinity_requests",
            "Requests answered, by endpoint, personalization mode and status",
            ["endpoint", "mode", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "affinity_request_seconds",
            "Time from request to response, by endpoint and personalization mode",
            ["endpoint", "mode"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "affinity_events_rejected",
            "Events refused by POST /events, by the field that failed (engine: OpenSearch)",
            ["reason"],
            registry=self.registry,
        )

    def count_rejections(self, rejections: Iterable[dict[str, Any]]) -> None:
        for r in rejections:
            engine = str(r.get("reason", "")).startswith("event was not stored")
            self.rejected.labels("engine" if engine else str(r.get("field", "event"))).inc()


def note_mode(request: Request, mode: object) -> None:
    """Record the search's personalization mode for the request's metrics."""
    request.scope[SCOPE_KEY] = str(mode or "none")


def _endpoint(routes: list[Route], scope: Scope) -> str:
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path
    return "other"


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[Route]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._endpoints: dict[tuple[str, str], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = self._endpoint(scope)
            mode = scope.get(SCOPE_KEY, "-")
            self.metrics.requests.labels(endpoint, mode, str(status[0])).inc()
            self.metrics.latency.labels(endpoint, mode).observe(time.perf_counter() - t0)

    def _endpoint(self, scope: Scope) -> str:
        key = (scope["method"], scope["path"])
        found = self._endpoints.get(key)
        if found is None:
            found = _endpoint(self.routes, {**scope, "type": "http"})
            if len(self._endpoints) < 10_000:  # paths name indices: bounded memory
                self._endpoints[key] = found
        return found


class StateCollector(Collector):
    """The numbers other objects keep (engine pool, cache, feed, queues), read at scrape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        state = getattr(self.app.state, "proxy", None)
        if state is None:
            return
        yield from _engine(state)
        yield from _cache(state)
        yield from _events(getattr(self.app.state, "events", None))
        yield from _impressions(state.impressions)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _engine(state: Any) -> Iterator[Metric]:
    errors = CounterMetricFamily(
        "affinity_engine_errors", "Requests to OpenSearch that failed, by kind", labels=["kind"]
    )
    errors.add_metric(["timeout"], getattr(state.http, "timeouts", 0))
    errors.add_metric(["unavailable"], getattr(state.http, "unavailable", 0))
    yield errors


def _cache(state: Any) -> Iterator[Metric]:
    cache = getattr(state.profiles, "cache", None)
    if cache is None:
        return
    s = cache.stats()
    yield _counter("affinity_profile_cache_hits", "Profile reads served from memory", s.hits)
    yield _counter("affinity_profile_cache_misses", "Profile reads sent to OpenSearch", s.misses)
    yield _counter("affinity_profile_cache_evictions", "Profiles evicted (LRU)", s.evictions)
    yield _gauge("affinity_profile_cache_bytes", "Stored JSON bytes cached", s.bytes)
    yield _gauge("affinity_profile_cache_entries", "Users cached", s.entries)
    feed = getattr(state.profiles, "feed", None)
    if feed is not None:
        yield _gauge("affinity_change_feed_trusted", "1 while the feed is read", feed.trusted)
        lag = feed.lag_s if feed.lag_s is not None else float("nan")
        yield _gauge(
            "affinity_change_feed_lag_seconds", "From a change's publication to applying it", lag
        )


def _events(committer: Any) -> Iterator[Metric]:
    if committer is None or isinstance(committer, str):
        return
    yield _gauge(
        "affinity_events_pending", "Events accepted, not yet written", committer.pending_events
    )
    yield _gauge(
        "affinity_fold_lag_events",
        "Events written to the log, not yet folded into profiles",
        committer.unfolded_events,
    )


def _impressions(writer: Any) -> Iterator[Metric]:
    if writer is None:
        return
    yield _gauge("affinity_impressions_queued", "Impressions waiting", writer.queued)
    yield _counter("affinity_impressions_written", "Impressions stored", writer.written)
    yield _counter(
        "affinity_impressions_dropped", "Impressions dropped: the queue was full", writer.dropped
    )
    yield _counter("affinity_impressions_failed", "Impressions OpenSearch refused", writer.failed)


def install(app: Any, routes: list[Route]) -> Metrics:
    """Count `app`'s requests and serve METRICS_PATH (call once, from create_app)."""
    metrics = Metrics()
    metrics.registry.register(StateCollector(app))
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    app.state.metrics = metrics
    return metrics


async def endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE)


ROUTES = [Route(METRICS_PATH, endpoint, methods=["GET"])]
