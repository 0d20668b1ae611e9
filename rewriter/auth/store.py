"""Staff accounts and API keys in OpenSearch (`affinity-auth`): names, roles, scopes, hashes.

One document per account (`staff:<name>`) and per key (`key:<id>`); the secret of neither is
ever stored, only its argon2 hash (auth/hashing.py). The CLI and the dashboard write here; the
proxy reads keys through `KeyRecord.from_source` with its own async client (serve/auth_gate.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError

from rewriter.auth import hashing, roles
from rewriter.auth.index import ensure_index

MAPPINGS = {
    "dynamic": False,
    "properties": {
        "kind": {"type": "keyword"},
        "name": {"type": "keyword"},
        "role": {"type": "keyword"},
        "scopes": {"type": "keyword"},
        "disabled": {"type": "boolean"},
        "revoked": {"type": "boolean"},
        "created_at": {"type": "date", "format": "epoch_second"},
    },
}


class AuthStoreError(ValueError):
    """A request the store refuses (a name taken, an account unknown); the message says why."""


@dataclass(frozen=True)
class StaffRecord:
    name: str
    role: str
    password_hash: str
    disabled: bool = False
    created_at: float = 0.0

    @classmethod
    def from_source(cls, src: Mapping[str, Any]) -> StaffRecord:
        return cls(
            str(src["name"]),
            str(src["role"]),
            str(src["hash"]),
            bool(src.get("disabled")),
            float(src.get("created_at") or 0),
        )


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    secret_hash: str
    revoked: bool = False
    created_at: float = 0.0

    @classmethod
    def from_source(cls, src: Mapping[str, Any]) -> KeyRecord:
        return cls(
            str(src["key_id"]),
            str(src.get("name") or ""),
            tuple(str(s) for s in src.get("scopes") or ()),
            str(src["hash"]),
            bool(src.get("revoked")),
            float(src.get("created_at") or 0),
        )


def key_doc_id(key_id: str) -> str:
    return f"key:{key_id}"


class AuthStore:
    """The accounts and keys of one deployment (index `index`)."""

    def __init__(self, es: OpenSearch, index: str) -> None:
        self.es = es
        self.index = index

    def ensure(self) -> None:
        ensure_index(self.es, self.index, MAPPINGS)

    # --- staff -------------------------------------------------------------------------------

    def add_staff(self, name: str, role: str, password: str) -> StaffRecord:
        roles.check_role(role)
        if not name or len(name) > 64 or not name.replace("-", "").replace(".", "").isalnum():
            raise AuthStoreError(f"staff name {name!r}: use 1-64 letters, digits, dots or dashes")
        if len(password) < 8:
            raise AuthStoreError("the password needs at least 8 characters")
        self.ensure()
        record = StaffRecord(name, role, hashing.hash_secret(password), False, time.time())
        src = {
            "kind": "staff",
            "name": name,
            "role": role,
            "hash": record.password_hash,
            "disabled": False,
            "created_at": int(record.created_at),
        }
        try:
            self.es.create(index=self.index, id=f"staff:{name}", body=src, refresh="wait_for")
        except ConflictError:
            raise AuthStoreError(f"staff account {name!r} exists already") from None
        return record

    def staff(self, name: str) -> StaffRecord | None:
        try:
            doc = self.es.get(index=self.index, id=f"staff:{name}")
        except NotFoundError:
            return None
        return StaffRecord.from_source(doc["_source"])

    def list_staff(self) -> list[StaffRecord]:
        return [StaffRecord.from_source(s) for s in self._all("staff")]

    def disable_staff(self, name: str) -> None:
        if self.staff(name) is None:
            raise AuthStoreError(f"no staff account {name!r} (see `affinity staff list`)")
        body = {"doc": {"disabled": True}}
        self.es.update(index=self.index, id=f"staff:{name}", body=body, refresh="wait_for")

    def login(self, name: str, password: str) -> StaffRecord | None:
        """The account when the name and password match an enabled account, else None."""
        record = self.staff(name) if name else None
        if record is None:
            hashing.verify_secret(_DUMMY_HASH, password)  # same time for unknown names
            return None
        if not hashing.verify_secret(record.password_hash, password) or record.disabled:
            return None
        return record

    # --- keys --------------------------------------------------------------------------------

    def create_key(self, name: str, scopes: list[str]) -> tuple[KeyRecord, str]:
        """The new key's record and the key itself (shown once; only its hash is kept)."""
        checked = roles.check_scopes(scopes)
        self.ensure()
        key_id, secret, full = hashing.new_key()
        record = KeyRecord(key_id, name, checked, hashing.hash_secret(secret), False, time.time())
        src = {
            "kind": "key",
            "key_id": key_id,
            "name": name,
            "scopes": list(checked),
            "hash": record.secret_hash,
            "revoked": False,
            "created_at": int(record.created_at),
        }
        self.es.create(index=self.index, id=key_doc_id(key_id), body=src, refresh="wait_for")
        return record, full

    def list_keys(self) -> list[KeyRecord]:
        return [KeyRecord.from_source(s) for s in self._all("key")]

    def revoke_key(self, key_id: str) -> None:
        try:
            self.es.update(
                index=self.index,
                id=key_doc_id(key_id),
                body={"doc": {"revoked": True}},
                refresh="wait_for",
            )
        except NotFoundError:
            raise AuthStoreError(f"no key {key_id!r} (see `affinity keys list`)") from None

    def _all(self, kind: str) -> list[dict[str, Any]]:
        if not self.es.indices.exists(index=self.index):
            return []
        body = {"query": {"term": {"kind": kind}}, "size": 1000, "sort": [{"created_at": "asc"}]}
        return [h["_source"] for h in self.es.search(index=self.index, body=body)["hits"]["hits"]]


def key_matches(record: KeyRecord, secret: str) -> bool:
    """Is `secret` the secret of this (unrevoked) key?"""
    return not record.revoked and hashing.verify_secret(record.secret_hash, secret)


_DUMMY_HASH = hashing.hash_secret("affinity-no-such-account")
