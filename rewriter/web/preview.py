"""The preview page: generic, live and draft rankings of one query for one user, side by side,
with why each hit is where it is (measure/boost_compare.py `preview`), and the draft-vs-live
summary over sampled users (measure/boost_diff.py `diff`, as `affinity boost diff` prints it)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter.boost.profile import BoostProfile, BoostProfileError
from rewriter.measure import boost_compare, boost_diff
from rewriter.web.context import UI, page, web
from rewriter.web.dashboard import _name
from rewriter.web.guard import guarded
from rewriter.web.sessions import Refused, Staff
from rewriter.web.versions import check

DIFF_USERS = 10


def _title(hit: dict[str, Any]) -> str:
    return str((hit.get("_source") or {}).get("title") or hit["_id"])


def _column(key: str, title: str, pv: boost_compare.Preview, generic: bool) -> dict[str, Any]:
    hits = pv.generic if generic else pv.with_rules
    log = pv.log
    summary = (
        "OpenSearch's own order"
        if generic
        else f"version {pv.boost.version}; alpha_eff {float(log.get('alpha_eff') or 0):.3f}; "
        f"segments {', '.join(log.get('segments') or []) or '-'}; rules fired "
        f"{', '.join(log.get('rules_fired') or []) or '-'}"
    )
    return {
        "key": key,
        "title": title,
        "summary": summary,
        "hits": [
            {"title": _title(h), "why": [] if generic else pv.why.get(h["_id"], [])}
            for h in hits[: boost_compare.TOP]
        ],
        "hidden": [] if generic else [f"{_title(h)} (rule {r})" for h, r in pv.hidden],
    }


@guarded("preview")
async def preview_page(request: Request, staff: Staff) -> Response:
    name = _name(request)
    w = web(request)
    live = w.served(request).get(name)
    draft = await run_in_threadpool(w.versions.draft, name)
    user = request.query_params.get("user", "").strip()
    q = request.query_params.get("q", "").strip()
    index = request.query_params.get("index", "").strip() or boost_compare.boost_index(
        w.settings, name
    )
    values: dict[str, Any] = {"name": name, "user": user, "q": q, "index": index}
    if not user:
        values["note"] = "Pick a user (raw id) and a query; an empty query browses."
        return page(request, "preview.html", staff, **values)
    candidate: BoostProfile | None = None
    if draft is not None:
        parsed = check(draft.yaml, f"{name}.yaml")
        if isinstance(parsed, BoostProfileError):
            raise Refused(400, f"the draft of {name} is invalid; fix it in the editor first")
        candidate = parsed
    after = candidate or live
    if after is None:
        raise Refused(404, f"no boost profile {name!r}")
    before = live or after
    try:
        previews = [
            await run_in_threadpool(boost_compare.preview, w.es, w.settings, index, p, user, q)
            for p in (before, after)
        ]
        report = await run_in_threadpool(
            lambda: boost_diff.diff(
                w.es, w.settings, index, before, after, users=DIFF_USERS, queries=[q]
            )
        )
    except Exception as exc:  # the engine's refusal (no such index, a bad field) as a page
        raise Refused(400, f"the preview could not run on {index!r}: {exc}") from None
    values.update(
        columns=[
            _column("generic", "Generic", previews[0], True),
            _column("live", "Live", previews[0], False),
            _column("draft", "Draft" if candidate else "Draft (none: live)", previews[1], False),
        ],
        diff=boost_diff.format_diff(report),
        live_version=before.version,
        draft_version=after.version,
    )
    return page(request, "preview.html", staff, **values)


ROUTES = [Route(f"{UI}/boost/{{name}}/preview", preview_page, methods=["GET"])]
