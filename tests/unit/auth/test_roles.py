"""The role matrix, cell by cell: the README's table is this one."""

from __future__ import annotations

import pytest

from rewriter.auth import roles

# role -> actions allowed; every other action of ACTIONS is refused.
EXPECTED = {
    "viewer": {"read", "read_audit"},
    "merchandiser": {"read", "read_audit", "edit_draft", "preview"},
    "publisher": {"read", "read_audit", "edit_draft", "preview", "publish", "rollback"},
    "privacy": {"read", "read_audit", "privacy"},
    "admin": set(roles.ACTIONS),
}


@pytest.mark.parametrize("role", roles.ROLES)
@pytest.mark.parametrize("action", roles.ACTIONS)
def test_each_cell(role: str, action: roles.Action) -> None:
    assert roles.allowed(role, action) is (action in EXPECTED[role])


def test_unknown_role_may_nothing() -> None:
    assert not any(roles.allowed("owner", a) for a in roles.ACTIONS)


@pytest.mark.parametrize(
    ("scopes", "need", "ok"),
    [
        (("search",), "search", True),
        (("search",), "events", False),
        (("search",), "admin", False),
        (("events",), "search", False),
        (("events",), "events", True),
        (("admin",), "search", False),
        (("admin",), "events", False),
        (("admin",), "admin", True),
        (("search", "events"), "events", True),
    ],
)
def test_scopes(scopes: tuple[str, ...], need: roles.Scope, ok: bool) -> None:
    assert roles.scope_allows(scopes, need) is ok


def test_bad_names_are_named() -> None:
    with pytest.raises(roles.UnknownName, match="role 'owner' does not exist; use one of viewer"):
        roles.check_role("owner")
    with pytest.raises(roles.UnknownName, match="scope 'write'"):
        roles.check_scopes(["search", "write"])
    with pytest.raises(roles.UnknownName, match="at least one scope"):
        roles.check_scopes([])
    assert roles.check_scopes(["events", "search", "events"]) == ("events", "search")
