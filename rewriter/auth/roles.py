"""Roles of staff accounts, scopes of machine keys, and the one matrix of who may do what.

Pure: every check of the dashboard, the CLI and the proxy asks `allowed` or `scope_allows`, so
the role matrix in the README is this table and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

Role = Literal["viewer", "merchandiser", "publisher", "privacy", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "merchandiser", "publisher", "privacy", "admin")

Scope = Literal["search", "events", "admin"]
SCOPES: tuple[Scope, ...] = ("search", "events", "admin")

Action = Literal[
    "read",  # boost profiles, versions, drafts, previews' results
    "read_audit",
    "edit_draft",
    "preview",
    "publish",
    "rollback",
    "privacy",  # look up, export, delete, opt out users
    "manage_staff",
    "manage_keys",
]
ACTIONS: tuple[Action, ...] = (
    "read",
    "read_audit",
    "edit_draft",
    "preview",
    "publish",
    "rollback",
    "privacy",
    "manage_staff",
    "manage_keys",
)

_READ: frozenset[Action] = frozenset({"read", "read_audit"})
ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = {
    "viewer": _READ,
    "merchandiser": _READ | {"edit_draft", "preview"},
    "publisher": _READ | {"edit_draft", "preview", "publish", "rollback"},
    "privacy": _READ | {"privacy"},
    "admin": frozenset(ACTIONS),
}
"""role -> the actions it may take; everything else is refused."""

SCOPE_ROLE: Mapping[Scope, Role] = {"admin": "admin"}
"""A machine key with the `admin` scope acts as an admin on the dashboard's endpoints."""


class UnknownName(ValueError):
    """A role or scope that does not exist; the message lists the ones that do."""


def allowed(role: str, action: Action) -> bool:
    """May a staff member with `role` take `action`?"""
    return action in ROLE_ACTIONS.get(role, frozenset())  # type: ignore[call-overload]


def scope_allows(scopes: Iterable[str], need: Scope) -> bool:
    """May a key with `scopes` call an endpoint that needs `need`? `admin` does not imply
    `search` or `events`: a leaked admin key is not also a traffic key, and the reverse."""
    return need in set(scopes)


def check_role(name: str) -> Role:
    if name not in ROLES:
        raise UnknownName(f"role {name!r} does not exist; use one of {', '.join(ROLES)}")
    return name  # type: ignore[return-value]


def check_scopes(names: Iterable[str]) -> tuple[Scope, ...]:
    out: list[Scope] = []
    for name in names:
        if name not in SCOPES:
            raise UnknownName(f"scope {name!r} does not exist; use {', '.join(SCOPES)}")
        if name not in out:
            out.append(name)  # type: ignore[arg-type]
    if not out:
        raise UnknownName(f"a key needs at least one scope: {', '.join(SCOPES)}")
    return tuple(out)
