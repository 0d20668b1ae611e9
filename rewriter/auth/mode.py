"""Whether the proxy asks for credentials: AFFINITY_AUTH, or by where it listens."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve(mode: str, host: str) -> str:
    """`off` or `required`: `auto` is required unless the proxy listens on loopback only."""
    if mode in ("off", "required"):
        return mode
    return "off" if is_loopback(host) else "required"
