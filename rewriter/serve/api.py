"""In-process personalization for apps that do not want the proxy.

    from rewriter.api import Personalizer
    p = Personalizer.from_env()                      # or Personalizer(es_client, settings)
    result = p.rewrite("catalog", body, user_id="u42")
    response = my_client.search(index="catalog", body=result.body)

`search()` does both steps with the given client and adds the `personalization` object, as
the proxy does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from rewriter import config, privacy
from rewriter.boost.profile import (
    BoostProfile,
    bind_secret,
    default_boost_name,
    load_boost_profiles,
)
from rewriter.engine.client import connect
from rewriter.profiles.doc import UnreadableProfile, profile_from_source
from rewriter.profiles.view import UserAffinity, affinity_view
from rewriter.ranking import pins
from rewriter.ranking.explain import explain_hits
from rewriter.ranking.rewrite import RequestContext, RewriteResult, rewrite


class Personalizer:
    """Rewrites search bodies for a user with a synchronous OpenSearch client."""

    def __init__(
        self,
        es: OpenSearch,
        settings: config.Settings,
        boost_profiles: Mapping[str, BoostProfile] | None = None,
    ) -> None:
        self.es = es
        self.settings = settings
        self.secret = config.user_secret(settings)
        loaded = boost_profiles or load_boost_profiles(settings.boost_dir)
        self.boost_profiles = {n: bind_secret(p, self.pseudonym) for n, p in loaded.items()}

    def pseudonym(self, user_id: str) -> str:
        return privacy.pseudonymize(user_id, self.secret)

    @classmethod
    def from_env(cls) -> Personalizer:
        settings = config.load()
        return cls(connect(settings), settings)

    def boost(self, name: str | None = None) -> BoostProfile:
        key = name or default_boost_name(self.boost_profiles)
        if key not in self.boost_profiles:
            known = ", ".join(sorted(self.boost_profiles))
            raise KeyError(f"boost profile {key!r} is not loaded (known: {known})")
        return self.boost_profiles[key]

    def user_affinity(self, user_id: str, boost: BoostProfile) -> UserAffinity | None:
        return self._affinity(self.pseudonym(user_id), boost)

    def _affinity(self, pseudonym: str, boost: BoostProfile) -> UserAffinity | None:
        try:
            doc = self.es.get(index=self.settings.indices.profiles, id=pseudonym, realtime=True)
        except NotFoundError:
            return None
        return affinity_view(profile_from_source(doc["_source"]), time.time(), boost.top_k)

    def rewrite(
        self,
        index: str,
        body: Mapping[str, Any],
        user_id: str | None,
        context: RequestContext | None = None,
        boost_profile: str | None = None,
    ) -> RewriteResult:
        boost, user, ctx = self._request(index, user_id, context, boost_profile)
        return rewrite(body, user, boost, ctx)

    def _request(
        self, index: str, user_id: str | None, context: RequestContext | None, name: str | None
    ) -> tuple[BoostProfile, UserAffinity | None, RequestContext]:
        """The boost profile, the user's view and the context a request is rewritten with."""
        boost = self.boost(name or self.settings.index_profile_map.get(index))
        pseudonym = self.pseudonym(user_id) if user_id else None
        ctx = context or RequestContext()
        try:
            user = self._affinity(pseudonym, boost) if pseudonym else None
        except UnreadableProfile:  # as the proxy does: generic, and the reason says why
            user, ctx = None, replace(ctx, profile_unreadable=True)
        if pseudonym and ctx.user is None:  # segments that list users compare pseudonyms
            ctx = replace(ctx, user=pseudonym)
        return boost, user, ctx

    def search(
        self,
        index: str,
        body: Mapping[str, Any],
        user_id: str | None,
        context: RequestContext | None = None,
        boost_profile: str | None = None,
    ) -> dict[str, Any]:
        """Rewrite, send, and add `personalization`, as the proxy does; with
        `context.explain`, each hit carries the proxy's `?explain=true` breakdown."""
        boost, user, ctx = self._request(index, user_id, context, boost_profile)
        result = rewrite(body, user, boost, ctx)
        response = run_search(self.es, index, result)
        log = dict(result.log)
        if ctx.explain:
            explain_hits(response, log, boost, user, result.body, result.rules)
        log.pop("params", None)
        response["personalization"] = log
        return response


def run_search(es: OpenSearch, index: str, result: RewriteResult) -> dict[str, Any]:
    """Send a rewritten search; with pins, it and the pinned fetch go in one _msearch and the
    page is merged (rewriter/ranking/pins.py). Errors raise like `es.search` does."""
    if result.pins is None:
        return es.search(index=index, body=result.body)
    lines, _ = pins.msearch_request(index, result.body, result.pins, {})
    status, merged = pins.from_msearch(es.msearch(body=lines), result.pins)
    if status != 200:
        from opensearchpy.exceptions import HTTP_EXCEPTIONS, TransportError

        error = HTTP_EXCEPTIONS.get(status, TransportError)
        raise error(status, str(merged["error"].get("type")), merged)
    return merged
