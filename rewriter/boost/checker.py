"""`affinity boost check`: every problem of boost profile files, at file:line:column.

Two layers. The file itself (boost/profile.py: keys, types, ranges, segments, schedules,
overlapping pins) needs nothing but the text. The catalog layer confirms, against the live
mapping of the index the profile ranks, that every field the file uses exists and has a
usable type (attributes: keyword doc values for the Painless script; `created_within`: a
date; filters: not a text field), and warns about pinned items the catalog does not hold
(the pin is skipped until the item exists). `CatalogView` is that engine-side knowledge;
`check_files` is pure given one. preview and diff live in measure/boost_compare.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rewriter.boost.profile import BoostProfile, BoostProfileError, load_boost_profile
from rewriter.boost.yaml_fields import Ref, suggest

Severity = Literal["error", "warning"]


KEYWORD_TYPES = ("keyword", "constant_keyword")


DATE_TYPES = ("date", "date_nanos")


TEXT_TYPES = ("text", "match_only_text")


@dataclass(frozen=True)
class Finding:
    """One problem: where it is, what it is (the message says what to do)."""

    source: str
    line: int
    column: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.source}:{self.line}:{self.column}: {tag}{self.message}"


@dataclass(frozen=True)
class CatalogView:
    """What the engine says about one index: field -> type (multi-fields as `title.raw`)
    and which of some item ids exist."""

    index: str
    fields: Mapping[str, str]
    items: frozenset[str] = frozenset()


@dataclass
class CheckReport:
    profiles: list[BoostProfile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    catalog_notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


CatalogLookup = Callable[[BoostProfile], CatalogView | str]


"""The catalog view for a profile, or why there is none (the engine is unreachable...)."""


def check_files(paths: Sequence[Path], catalog: CatalogLookup | None) -> CheckReport:
    """Validate each file; with `catalog`, also its fields and pinned items."""
    report = CheckReport()
    names: dict[str, str] = {}
    for path in paths:
        try:
            profile = load_boost_profile(path)
        except BoostProfileError as exc:
            report.findings += [Finding(e.source, e.line, e.column, e.message) for e in exc.errors]
            continue
        except OSError as exc:
            report.findings.append(Finding(str(path), 1, 1, f"cannot read the file: {exc}"))
            continue
        if profile.name in names:
            message = f"profile name {profile.name!r} is already used by {names[profile.name]}"
            report.findings.append(Finding(str(path), 1, 1, message))
        names.setdefault(profile.name, str(path))
        report.profiles.append(profile)
        if catalog is None:
            continue
        view = catalog(profile)
        if isinstance(view, str):
            report.catalog_notes.append(f"{path}: catalog not checked: {view}")
            continue
        report.findings += catalog_findings(profile, view)
    return report


def catalog_findings(profile: BoostProfile, view: CatalogView) -> list[Finding]:
    """The profile's fields and pinned items against the catalog."""
    out: list[Finding] = []
    for ref in profile.refs:
        if ref.kind == "item":
            if ref.name not in view.items:
                message = (
                    f"{ref.path}: pinned item {ref.name!r} is not in {view.index}; the pin "
                    "is skipped until the item is loaded (check the id)"
                )
                out.append(Finding(profile.source, ref.line, ref.column, message, "warning"))
            continue
        problem = field_problem(ref, view)
        if problem:
            out.append(Finding(profile.source, ref.line, ref.column, f"{ref.path}: {problem}"))
    return out


def field_problem(ref: Ref, view: CatalogView) -> str | None:
    """Why a field reference does not work with this catalog (None when it does)."""
    kind = view.fields.get(ref.name)
    if kind is None:
        hint = suggest(ref.name, sorted(view.fields))
        return f"field {ref.name!r} is not in the mapping of {view.index}{hint}"
    if ref.need == "keyword" and kind not in KEYWORD_TYPES:
        return (
            f"field {ref.name!r} is {kind}, but affinity attributes need a keyword field "
            f"(the script reads its doc values){_keyword_hint(ref.name, view)}"
        )
    if ref.need == "date" and kind not in DATE_TYPES:
        return f"created_within needs {ref.name!r} to be a date field, but it is {kind}"
    if ref.need == "any" and kind in TEXT_TYPES:
        return (
            f"field {ref.name!r} is {kind}: filters compare whole values, which text fields "
            f"do not keep{_keyword_hint(ref.name, view)}"
        )
    return None


def _keyword_hint(name: str, view: CatalogView) -> str:
    subs = [f for f, kind in view.fields.items() if f.startswith(f"{name}.")]
    keyword = [f for f in subs if view.fields[f] in KEYWORD_TYPES]
    return f"; use {keyword[0]!r}" if keyword else "; map it as keyword"


def flatten_mapping(response: Mapping[str, Any]) -> dict[str, str]:
    """field -> type from a GET _mapping response (all indices behind an alias merged)."""
    fields: dict[str, str] = {}
    for index in response.values():
        _walk(index.get("mappings", {}).get("properties", {}), "", fields)
    return fields


def _walk(properties: Mapping[str, Any], prefix: str, out: dict[str, str]) -> None:
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            _walk(spec["properties"], f"{path}.", out)
            out.setdefault(path, spec.get("type", "object"))
            continue
        out.setdefault(path, spec.get("type", "object"))
        for sub, sub_spec in spec.get("fields", {}).items():
            out.setdefault(f"{path}.{sub}", sub_spec.get("type", "object"))
