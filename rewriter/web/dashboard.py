"""The boost profile pages: list, editor (forms and YAML), drafts, preview, publish, versions,
rollback, export. Parsing and checking are boost/profile.py's; preview and the draft-vs-live
summary are measure/boost_compare.py's and measure/boost_diff.py's."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from rewriter import privacy
from rewriter.boost.profile import BoostProfile, BoostProfileError
from rewriter.web import forms
from rewriter.web.context import UI, Web, page, web, when
from rewriter.web.guard import guarded
from rewriter.web.sessions import Refused, Staff
from rewriter.web.versions import PublishError, check, write_profile_file

NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not NAME.match(name):
        raise Refused(400, f"{name!r} is not a boost profile name (a-z, 0-9, _ and -)")
    return name


def _live_yaml(profile: BoostProfile | None) -> str | None:
    if profile is None:
        return None
    try:
        return Path(profile.source).read_text(encoding="utf-8")
    except OSError:
        return None


def _redirect(path: str, flash: str = "") -> Response:
    from urllib.parse import quote

    return RedirectResponse(f"{UI}{path}" + (f"?flash={quote(flash)}" if flash else ""), 303)


def audit_diff(old: str, new: str, pseudonymize: Any) -> str:
    """A unified diff of two profile YAMLs for the audit log, `users:` lists as pseudonyms."""

    def safe(text: str) -> list[str]:
        data = forms.load(text)
        if not data:
            return re.sub(r"users:.*", "users: [redacted]", text).splitlines()
        return forms.dump(_redact(data, pseudonymize)).splitlines()

    return "\n".join(difflib.unified_diff(safe(old), safe(new), "before", "after", lineterm=""))


def _redact(value: Any, pseudonymize: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "users" and isinstance(v, list):
                out["pseudonyms"] = [pseudonymize(str(u)) for u in v]
            else:
                out[k] = _redact(v, pseudonymize)
        return out
    if isinstance(value, list):
        return [_redact(v, pseudonymize) for v in value]
    return value


def _pseudonymizer(w: Web) -> Any:
    return lambda raw: privacy.pseudonymize(raw, w.secret)


# --- list ------------------------------------------------------------------------------------


@guarded("read")
async def boost_list(request: Request, staff: Staff) -> Response:
    w = web(request)
    served = w.served(request)
    drafts = await run_in_threadpool(w.versions.drafts)
    lives = {v.profile: v for v in await run_in_threadpool(w.versions.lives)}
    rows = []
    for name in sorted(set(served) | set(drafts)):
        live = lives.get(name)
        draft = drafts.get(name)
        rows.append(
            {
                "name": name,
                "version": served[name].version if name in served else None,
                "draft": draft,
                "changed": when(max(live.at if live else 0, draft.at if draft else 0)),
                "by": draft.by if draft else (live.by if live else "file"),
            }
        )
    return page(request, "boost_list.html", staff, rows=rows, errors=w.served_errors(request))


@guarded("edit_draft")
async def boost_new(request: Request, staff: Staff) -> Response:
    name = str((await request.form()).get("name", "")).strip()
    if not NAME.match(name):
        raise Refused(400, f"{name!r} is not a boost profile name (a-z, 0-9, _ and -)")
    w = web(request)
    if name in w.served(request) or await run_in_threadpool(w.versions.draft, name):
        return _redirect(f"/boost/{name}", f"{name} exists already")
    await run_in_threadpool(w.versions.save_draft, name, f"name: {name}\n", staff.name)
    await run_in_threadpool(w.audit.record, staff.name, "draft_create", name)
    return _redirect(f"/boost/{name}", "draft created")


# --- editor ----------------------------------------------------------------------------------


def _problems(yaml_text: str, name: str) -> tuple[list[str], dict[str, str], dict[int, str]]:
    """(messages as `affinity boost check` prints them, by form field, by line)."""
    parsed = check(yaml_text, f"{name}.yaml")
    if not isinstance(parsed, BoostProfileError):
        return [], {}, {}
    messages = [str(e) for e in parsed.errors]
    marks: dict[str, str] = {}
    lines: dict[int, str] = {}
    for e in parsed.errors:
        marks.setdefault(forms.field_of(e.message), e.message)
        lines.setdefault(e.line, e.message)
    return messages, marks, lines


@guarded("read")
async def editor(request: Request, staff: Staff) -> Response:
    name = _name(request)
    w = web(request)
    served = w.served(request).get(name)
    draft = await run_in_threadpool(w.versions.draft, name)
    if draft is None and served is None:
        raise Refused(404, f"no boost profile {name!r}: create it on the list page")
    text = draft.yaml if draft else (_live_yaml(served) or f"name: {name}\n")
    problems, marks, bad_lines = _problems(text, name) if draft else ([], {}, {})
    return page(
        request,
        "editor.html",
        staff,
        name=name,
        draft=draft,
        draft_when=when(draft.at) if draft else "",
        live_version=served.version if served else None,
        ed=forms.editor(forms.load(text)),
        blank_segment=forms.SegmentRow(),
        blank_rule=forms.RuleRow(),
        segment_fields=forms.SEGMENT_FIELDS,
        ops=forms.OPS,
        actions=forms.RULE_ACTIONS,
        targets=forms.RULE_TARGETS,
        problems=problems,
        marks=marks,
        bad_lines=bad_lines,
        lines=text.splitlines(),
        yaml_text=text,
    )


async def _save(request: Request, staff: Staff, name: str, text: str) -> Response:
    w = web(request)
    served = w.served(request).get(name)
    before = await run_in_threadpool(w.versions.draft, name)
    old = before.yaml if before else (_live_yaml(served) or "")
    await run_in_threadpool(w.versions.save_draft, name, text, staff.name)
    diff = audit_diff(old, text, _pseudonymizer(w))
    await run_in_threadpool(w.audit.record, staff.name, "draft_edit", name, "", diff)
    problems, _, _ = _problems(text, name)
    flash = f"draft saved with {len(problems)} problem(s)" if problems else "draft saved"
    return _redirect(f"/boost/{name}", flash)


@guarded("edit_draft")
async def save_form(request: Request, staff: Staff) -> Response:
    name = _name(request)
    w = web(request)
    draft = await run_in_threadpool(w.versions.draft, name)
    base = draft.yaml if draft else (_live_yaml(w.served(request).get(name)) or f"name: {name}\n")
    form = {k: str(v) for k, v in (await request.form()).items()}
    return await _save(request, staff, name, forms.apply(base, form))


@guarded("edit_draft")
async def save_yaml(request: Request, staff: Staff) -> Response:
    name = _name(request)
    text = str((await request.form()).get("yaml", ""))
    if len(text) > 1_000_000:
        raise Refused(413, "the YAML is over 1 MB; a boost profile is far smaller")
    return await _save(request, staff, name, text.replace("\r\n", "\n"))


@guarded("edit_draft")
async def discard(request: Request, staff: Staff) -> Response:
    name = _name(request)
    w = web(request)
    await run_in_threadpool(w.versions.discard_draft, name)
    await run_in_threadpool(w.audit.record, staff.name, "draft_discard", name)
    return _redirect(f"/boost/{name}", "draft discarded")


# --- publish, versions, rollback -------------------------------------------------------------


async def _go_live(
    request: Request, staff: Staff, name: str, text: str, reason: str, action: str
) -> None:
    w = web(request)
    served = w.served(request).get(name)
    old = _live_yaml(served) or ""
    try:
        await run_in_threadpool(w.versions.publish, name, text, staff.name, reason, served)
    except PublishError as exc:
        raise Refused(400, str(exc)) from None
    registry = w.registry(request)
    await run_in_threadpool(
        write_profile_file, registry.directory, name, text, served.source if served else None
    )
    await run_in_threadpool(registry.reload)
    diff = audit_diff(old, text, _pseudonymizer(w))
    await run_in_threadpool(w.audit.record, staff.name, action, name, reason, diff)


@guarded("publish")
async def publish(request: Request, staff: Staff) -> Response:
    name = _name(request)
    w = web(request)
    reason = str((await request.form()).get("reason", "")).strip()
    draft = await run_in_threadpool(w.versions.draft, name)
    if draft is None:
        raise Refused(400, f"{name} has no draft to publish")
    await _go_live(request, staff, name, draft.yaml, reason, "publish")
    await run_in_threadpool(w.versions.discard_draft, name)
    return _redirect(f"/boost/{name}/versions", f"published {name}")


@guarded("read")
async def versions(request: Request, staff: Staff) -> Response:
    name = _name(request)
    w = web(request)
    served = w.served(request).get(name)
    rows = [
        {"version": v.version, "when": when(v.at), "by": v.by, "reason": v.reason}
        for v in await run_in_threadpool(w.versions.versions, name)
    ]
    live = served.version if served else None
    return page(request, "versions.html", staff, name=name, versions=rows, live_version=live)


@guarded("rollback")
async def rollback(request: Request, staff: Staff) -> Response:
    name = _name(request)
    w = web(request)
    form = await request.form()
    version, reason = str(form.get("version", "")), str(form.get("reason", "")).strip()
    stored = await run_in_threadpool(w.versions.version, name, version)
    if stored is None:
        raise Refused(404, f"{name} has no version {version!r}")
    await _go_live(request, staff, name, stored.yaml, reason, "rollback")
    return _redirect(f"/boost/{name}/versions", f"rolled back {name} to {version}")


@guarded("read")
async def export(request: Request, staff: Staff) -> Response:
    name = _name(request)
    version = request.path_params["version"]
    stored = await run_in_threadpool(web(request).versions.version, name, version)
    if stored is None:
        raise Refused(404, f"{name} has no version {version!r}")
    disposition = f'attachment; filename="{name}-{version}.yaml"'
    return Response(
        stored.yaml, media_type="application/yaml", headers={"content-disposition": disposition}
    )


ROUTES = [
    Route(f"{UI}/boost", boost_list, methods=["GET"]),
    Route(f"{UI}/boost/new", boost_new, methods=["POST"]),
    Route(f"{UI}/boost/{{name}}", editor, methods=["GET"]),
    Route(f"{UI}/boost/{{name}}/form", save_form, methods=["POST"]),
    Route(f"{UI}/boost/{{name}}/yaml", save_yaml, methods=["POST"]),
    Route(f"{UI}/boost/{{name}}/discard", discard, methods=["POST"]),
    Route(f"{UI}/boost/{{name}}/publish", publish, methods=["POST"]),
    Route(f"{UI}/boost/{{name}}/versions", versions, methods=["GET"]),
    Route(f"{UI}/boost/{{name}}/rollback", rollback, methods=["POST"]),
    Route(f"{UI}/boost/{{name}}/versions/{{version}}.yaml", export, methods=["GET"]),
]
