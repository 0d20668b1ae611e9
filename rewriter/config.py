"""Settings: where OpenSearch is, index names, secrets. Environment first, then defaults.

Every setting is data with help text (`SETTINGS`), so `affinity --help` and the docs can list
them and a test can check that each one is documented.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The project's root: index_templates/, painless/, engine/ and profiles/ are found from it."""

SETTINGS: dict[str, str] = {
    "OPENSEARCH_URL": "Use this existing cluster instead of the local engine "
    "(e.g. https://search.internal:9200).",
    "OPENSEARCH_USER": "User name for OPENSEARCH_URL (basic auth).",
    "OPENSEARCH_PASSWORD": "Password for OPENSEARCH_URL (basic auth).",
    "OPENSEARCH_VERIFY_CERTS": "Verify TLS certificates of OPENSEARCH_URL: 1 (default) or 0.",
    "OPENSEARCH_CA_CERTS": "Path to a CA bundle for OPENSEARCH_URL.",
    "AFFINITY_HOME": "Where the local engine keeps its data, logs and secret, and the record "
    "of the nodes `affinity engine start` started (default ~/.affinity).",
    "AFFINITY_ENGINE_PORT": "HTTP port of the local engine (default 9200).",
    "AFFINITY_INDEX_PREFIX": "Prefix for every index and alias affinity creates (default none).",
    "AFFINITY_SECRET": "Key for pseudonymizing user ids (HMAC). The local engine generates one.",
    "AFFINITY_TIMEOUT": "Seconds to wait for OpenSearch on a search before answering 504 "
    "(default 10).",
    "AFFINITY_INDEX_PROFILES": "Default boost profile per index, e.g. "
    "'catalog=movielens,products=default' (else the profile named default).",
    "AFFINITY_PROFILES_DIR": "Directory of boost profiles (default ./profiles).",
    "AFFINITY_FOLD_PROFILE": "Boost profile whose event_weights and half_life_days fold events "
    "into profiles (POST /events, `affinity ingest events`; default: the profile named default). "
    "Changing its half-life needs `affinity profile rebuild`.",
    "AFFINITY_IMPRESSIONS": "off: the proxy logs no impressions (one document per search, "
    "which experiment reports join clicks to); default on.",
    "AFFINITY_RETENTION_EVENTS_DAYS": "Events `affinity retention` keeps: `safe` (default) deletes "
    "only events whose affinity the fold drops anyway (more than EXPIRE_HALF_LIVES half-lives of "
    "the longest boost-profile half-life before their user's newest event; their counters are "
    "kept); a number of days deletes older events (fewer days than safe only with "
    "AFFINITY_RETENTION_FORCE); `off` keeps every event.",
    "AFFINITY_RETENTION_IMPRESSIONS_DAYS": "Days of impressions `affinity retention` keeps "
    "(default 90; `off` keeps all). A running experiment's impressions since its start are "
    "kept unless AFFINITY_RETENTION_FORCE.",
    "AFFINITY_RETENTION_FORCE": "1: apply retention horizons shorter than what profile rebuilds "
    "and running experiments' reports need (each run warns what they lose); default 0.",
    "AFFINITY_RETENTION_SERVE": "on: `affinity serve` applies retention each time it prunes the "
    "journal; default off (run `affinity retention run` yourself).",
    "AFFINITY_SHARDS": "Primary shards of the catalog and profiles indices, set by `affinity "
    "bootstrap` (default 1, index_templates/' count). An existing index keeps its count: "
    "bootstrap names the `affinity bootstrap --reindex NAME` that changes it.",
    "AFFINITY_REPLICAS": "Replicas of every affinity index, set by `affinity bootstrap`, also on "
    "existing indices (default 0, index_templates/' count). Use 1 on a cluster of 2 or more "
    "nodes, so that losing a node loses no shard.",
    "AFFINITY_PROFILE_CACHE_MB": "Memory for the proxy's profile cache, in MB of stored profile "
    "JSON (default 64; 0 turns it off). Entries stay until the profile changes (the change feed "
    "tells every proxy) or are evicted, least recently used first.",
    "AFFINITY_AUTH": "Who may call the proxy: `required` (every endpoint but health and the "
    "OpenAPI description needs an API key, a user token or a staff session), `off`, or `auto` "
    "(default: required unless `affinity serve` listens on loopback only).",
    "AFFINITY_SHOP_USERS": "Raw user ids the demo storefront (/_affinity/shop/) offers as "
    "shoppers, comma-separated (default none: type one).",
}


@dataclass(frozen=True)
class Indices:
    """Aliases (what everything reads and writes) for affinity's indices."""

    prefix: str = ""

    @property
    def catalog(self) -> str:
        return f"{self.prefix}catalog"

    @property
    def profiles(self) -> str:
        return f"{self.prefix}affinity-profiles"

    @property
    def events(self) -> str:
        return f"{self.prefix}affinity-events"

    @property
    def impressions(self) -> str:
        return f"{self.prefix}affinity-impressions"

    @property
    def journal(self) -> str:
        return f"{self.prefix}affinity-journal"

    @property
    def retired(self) -> str:
        """What retention took out of the events log, per user (ingest/retention.py)."""
        return f"{self.prefix}affinity-retired"

    @property
    def changes(self) -> str:
        """The change feed: users whose profiles were just written (profiles/changes.py)."""
        return f"{self.prefix}affinity-changes"

    @property
    def auth(self) -> str:
        """Staff accounts and API keys, hashes only (rewriter/auth/store.py)."""
        return f"{self.prefix}affinity-auth"

    @property
    def audit(self) -> str:
        """The append-only audit log of the dashboard and the CLI (rewriter/auth/audit.py)."""
        return f"{self.prefix}affinity-audit"

    @property
    def boost_versions(self) -> str:
        """Boost profile drafts and published versions (rewriter/web/versions.py)."""
        return f"{self.prefix}affinity-boost-versions"

    @property
    def private(self) -> tuple[str, ...]:
        """Affinity's own indices: per-user data the proxy never serves."""
        return (
            *(self.profiles, self.events, self.impressions, self.journal, self.retired),
            *(self.changes, self.auth, self.audit, self.boost_versions),
        )

    def alias(self, template_name: str) -> str:
        return {
            "catalog": self.catalog,
            "profiles": self.profiles,
            "events": self.events,
            "impressions": self.impressions,
            "journal": self.journal,
            "retired": self.retired,
            "changes": self.changes,
        }[template_name]


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one process."""

    url: str | None = None
    user: str | None = None
    password: str | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    home: Path = field(default_factory=lambda: Path.home() / ".affinity")
    engine_port: int = 9200
    indices: Indices = field(default_factory=Indices)
    secret: str | None = None
    timeout: float = 10.0
    index_profiles: str = ""
    boost_dir: Path = Path("profiles")
    fold_profile: str | None = None
    impressions: bool = True
    retention_events: str = "safe"
    retention_impressions: str = "90"
    retention_force: bool = False
    retention_serve: bool = False
    shards: int | None = None
    """AFFINITY_SHARDS; None: the templates' own count (engine/bootstrap.py index_layout)."""
    replicas: int | None = None
    """AFFINITY_REPLICAS; None: the templates' own count."""
    profile_cache_mb: float = 64.0
    """AFFINITY_PROFILE_CACHE_MB: the proxy's profile cache, in MB of stored profile JSON
    (profiles/cache.py); 0 turns it off."""

    auth: str = "auto"
    """AFFINITY_AUTH: off | required | auto (required unless serving on loopback)."""
    shop_users: tuple[str, ...] = ()
    """AFFINITY_SHOP_USERS: the demo storefront's shoppers."""

    @property
    def remote(self) -> bool:
        """True when OPENSEARCH_URL points at an existing cluster."""
        return self.url is not None

    @property
    def index_profile_map(self) -> dict[str, str]:
        """AFFINITY_INDEX_PROFILES `catalog=movielens,products=default` as a dict."""
        out = {}
        for part in filter(None, (p.strip() for p in self.index_profiles.split(","))):
            index, _, name = part.partition("=")
            out[index.strip()] = name.strip()
        return out

    @property
    def opensearch_url(self) -> str:
        return self.url or f"http://127.0.0.1:{self.engine_port}"

    @property
    def engine_dir(self) -> Path:
        return self.home / "engine"

    @property
    def node_registry(self) -> Path:
        """Where `affinity engine start` records each node it started, whatever its data dir,
        so `engine stop|status` without --data-dir find it."""
        return self.home / "nodes"


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


class SettingError(ValueError):
    """An environment variable holds a value affinity cannot use; the message names it."""


def _count(e: dict[str, str], name: str, least: int) -> int | None:
    raw = (e.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < least:
        raise SettingError(
            f"{name}={raw!r} is not a whole number of at least {least}: set it to one "
            f"(e.g. {name}=1) or unset it."
        )
    return int(raw)


def _number(e: dict[str, str], name: str, default: float, *, zero_ok: bool = False) -> float:
    """A positive number (or 0 with zero_ok) from the environment, else a SettingError
    naming the variable."""
    raw = (e.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
        kind = "a number, 0 or more" if zero_ok else "a positive number"
        raise SettingError(
            f"{name}={raw!r} is not {kind}: set it to one (e.g. {name}={default:g}) or unset it."
        )
    return value


def load(env: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment (or a given mapping, for tests)."""
    e = dict(os.environ if env is None else env)
    home = Path(e["AFFINITY_HOME"]).expanduser() if e.get("AFFINITY_HOME") else None
    return Settings(
        url=e.get("OPENSEARCH_URL") or None,
        user=e.get("OPENSEARCH_USER") or None,
        password=e.get("OPENSEARCH_PASSWORD") or None,
        verify_certs=_flag(e.get("OPENSEARCH_VERIFY_CERTS"), True),
        ca_certs=e.get("OPENSEARCH_CA_CERTS") or None,
        home=home or Path.home() / ".affinity",
        engine_port=_count(e, "AFFINITY_ENGINE_PORT", 1) or 9200,
        indices=Indices(prefix=e.get("AFFINITY_INDEX_PREFIX", "")),
        secret=e.get("AFFINITY_SECRET") or None,
        timeout=_number(e, "AFFINITY_TIMEOUT", 10.0),
        index_profiles=e.get("AFFINITY_INDEX_PROFILES", ""),
        boost_dir=Path(e.get("AFFINITY_PROFILES_DIR") or "profiles"),
        fold_profile=e.get("AFFINITY_FOLD_PROFILE") or None,
        impressions=_flag(e.get("AFFINITY_IMPRESSIONS"), True),
        retention_events=e.get("AFFINITY_RETENTION_EVENTS_DAYS") or "safe",
        retention_impressions=e.get("AFFINITY_RETENTION_IMPRESSIONS_DAYS") or "90",
        retention_force=_flag(e.get("AFFINITY_RETENTION_FORCE"), False),
        retention_serve=_flag(e.get("AFFINITY_RETENTION_SERVE"), False),
        shards=_count(e, "AFFINITY_SHARDS", 1),
        replicas=_count(e, "AFFINITY_REPLICAS", 0),
        profile_cache_mb=_number(e, "AFFINITY_PROFILE_CACHE_MB", 64.0, zero_ok=True),
        auth=_auth_mode(e.get("AFFINITY_AUTH")),
        shop_users=tuple(
            u.strip() for u in e.get("AFFINITY_SHOP_USERS", "").split(",") if u.strip()
        ),
    )


AUTH_MODES = ("off", "required", "auto")


def _auth_mode(raw: str | None) -> str:
    mode = (raw or "auto").strip().lower()
    if mode not in AUTH_MODES:
        raise SettingError(
            f"AFFINITY_AUTH={raw!r} is not one of off, required, auto: set one of them or "
            "unset it (auto: required unless the proxy listens on loopback only)."
        )
    return mode


class SecretMissing(RuntimeError):
    """No pseudonymization key for a remote cluster."""


def user_secret(settings: Settings) -> bytes:
    """The HMAC key that turns raw user ids into pseudonyms.

    AFFINITY_SECRET wins. With the local engine, a random key is generated on first use and
    kept owner-only beside its data. With a remote cluster there is no safe default: a key
    made up here would differ between machines and orphan every profile.
    """
    from rewriter.privacy import load_or_create_secret

    if settings.secret:
        return settings.secret.encode()
    if settings.remote:
        raise SecretMissing(
            "AFFINITY_SECRET is not set: with OPENSEARCH_URL every affinity process must share "
            "one pseudonymization key. Generate one (`python -c 'import secrets; "
            "print(secrets.token_hex(32))'`), store it in your secret manager and export it."
        )
    return load_or_create_secret(settings.engine_dir / "secret")
