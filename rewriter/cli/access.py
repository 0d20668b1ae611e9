"""Who may do what: `affinity staff add|list|disable`, `affinity keys create|list|revoke|
user-token`. Secrets are shown once; only argon2 hashes are stored (rewriter/auth)."""

from __future__ import annotations

import click

from rewriter import config
from rewriter.auth import roles, tokens
from rewriter.auth.audit import AuditLog
from rewriter.auth.store import AuthStore, AuthStoreError
from rewriter.cli.common import client, fail, requires_engine, settings


def _stores() -> tuple[AuthStore, AuditLog]:
    s = settings()
    es = requires_engine(client(30))
    return AuthStore(es, s.indices.auth), AuditLog(es, s.indices.audit)


def _when(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


@click.group(help="Staff accounts of the dashboard (roles: " + ", ".join(roles.ROLES) + ").")
def staff() -> None:
    pass


@staff.command("add", help="Add a staff account; the password is asked for (or --password).")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(roles.ROLES))
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="At least 8 characters (prompted when not given).",
)
def staff_add(name: str, role: str, password: str) -> None:
    store, audit = _stores()
    try:
        store.add_staff(name, role, password)
    except AuthStoreError as exc:
        fail(str(exc))
    audit.record("cli", "staff_add", name, f"role {role}")
    click.echo(f"staff account {name} ({role}) added")


@staff.command("list", help="Staff accounts: name, role, created, disabled.")
def staff_list() -> None:
    store, _ = _stores()
    for r in store.list_staff():
        state = "disabled" if r.disabled else "active"
        click.echo(f"{r.name:<24} {r.role:<13} {_when(r.created_at)}  {state}")


@staff.command("disable", help="Disable an account: it cannot sign in, its sessions end.")
@click.argument("name")
def staff_disable(name: str) -> None:
    store, audit = _stores()
    try:
        store.disable_staff(name)
    except AuthStoreError as exc:
        fail(str(exc))
    audit.record("cli", "staff_disable", name)
    click.echo(f"staff account {name} disabled")


@click.group(help="API keys for machines (scopes: " + ", ".join(roles.SCOPES) + ").")
def keys() -> None:
    pass


@keys.command("create", help="Create a key; it is printed once, only its hash is stored.")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(roles.SCOPES))
def keys_create(name: str, scopes: tuple[str, ...]) -> None:
    store, audit = _stores()
    record, key = store.create_key(name, list(scopes))
    audit.record("cli", "key_create", record.key_id, f"{name}: {', '.join(record.scopes)}")
    click.echo(f"key {record.key_id} ({', '.join(record.scopes)}) for {name}:", err=True)
    click.echo(key)
    click.echo("Store it now: it is not shown again.", err=True)


@keys.command("list", help="Keys: id, name, scopes, created, revoked (never the secret).")
def keys_list() -> None:
    store, _ = _stores()
    for r in store.list_keys():
        state = "revoked" if r.revoked else "active"
        click.echo(
            f"{r.key_id}  {r.name:<24} {','.join(r.scopes):<20} {_when(r.created_at)}  {state}"
        )


@keys.command("revoke", help="Revoke a key by id; proxies refuse it within 5 seconds.")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    store, audit = _stores()
    try:
        store.revoke_key(key_id)
    except AuthStoreError as exc:
        fail(str(exc))
    audit.record("cli", "key_revoke", key_id)
    click.echo(f"key {key_id} revoked")


@keys.command(
    "user-token",
    help="A signed token for one user (valid "
    f"{tokens.USER_TOKEN_TTL_S // 60} minutes): a browser may search and send events as that "
    "user with it, and nothing else. Issue these from the shop's backend.",
)
@click.argument("user_id")
def keys_user_token(user_id: str) -> None:
    s = settings()
    try:
        secret = config.user_secret(s)
    except config.SecretMissing as exc:
        fail(str(exc))
    click.echo(tokens.issue_user_token(secret, user_id))
