"""Turning option values into a validated configuration: regions, filters, the access key.

Kept apart from the click layer so the rules (which gateway, which filter spelling, where the
secret may come from) are plain functions with plain inputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.hec import STATES, parse_severity, token

DEFAULT_BASE_URL = "https://cloudinfra-gw-us.portal.checkpoint.com"
REGION_GATEWAYS = {
    "us": "https://cloudinfra-gw-us.portal.checkpoint.com",
    "eu": "https://cloudinfra-gw.portal.checkpoint.com",
    "ca": "https://cloudinfra-gw.ca.portal.checkpoint.com",
    "ap": "https://cloudinfra-gw.ap.portal.checkpoint.com",
    "uk": "https://cloudinfra-gw.uk.portal.checkpoint.com",
    "me": "https://cloudinfra-gw.me.portal.checkpoint.com",
    "in": "https://cloudinfra-gw.in.portal.checkpoint.com",
}
ACCESS_KEY_ENV = "HARMONY_ACCESS_KEY"
# scheme://userinfo@ — greedy up to the last '@' of the authority: a raw '@' in a password
# must not leave its tail behind
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def strip_userinfo(url: str) -> str:
    """`https://user:password@host/x` → `https://host/x` (what may be printed or stored)."""
    return _USERINFO_RE.sub(r"\1", url, count=1)


def resolve_base_url(base_url: str | None, region: str | None) -> str:
    """--base-url wins; else the region's gateway; else the US gateway (the connector default)."""
    if base_url and region:
        raise ConfigError(
            "both a base URL and --region are set", "use one of --base-url (HARMONY_BASE_URL) or --region"
        )
    if base_url:
        url = base_url.strip().rstrip("/")
        shown = strip_userinfo(url)  # never printed, logged or stored with a password
        if shown != url:
            raise ConfigError(
                f"base URL {shown!r} holds a user name or password (not shown)",
                "remove it from --base-url / HARMONY_BASE_URL: the API key is HARMONY_CLIENT_ID and "
                "HARMONY_ACCESS_KEY (or --access-key-file)",
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base URL {shown!r} is not http(s)", "use e.g. https://cloudinfra-gw.portal.checkpoint.com"
            )
        return url
    if region:
        return REGION_GATEWAYS[region.lower()]
    return DEFAULT_BASE_URL


def read_access_key(env: Mapping[str, str], key_file: str | None) -> str:
    """The secret from --access-key-file (first line) or HARMONY_ACCESS_KEY; never from argv."""
    if key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --access-key-file {key_file}: {exc.strerror}", "point it at a readable file"
            ) from None
        value = key[0].strip() if key else ""
        if not value:
            raise ConfigError(f"--access-key-file {key_file} is empty", "write the access key into it")
        return value
    value = env.get(ACCESS_KEY_ENV, "").strip()
    if not value:
        raise ConfigError("no access key", f"set {ACCESS_KEY_ENV} or use --access-key-file (HARMONY_ACCESS_KEY_FILE)")
    return value


def require_client_id(client_id: str | None) -> str:
    if not client_id or not client_id.strip():
        raise ConfigError("no client id", "set HARMONY_CLIENT_ID or --client-id")
    return client_id.strip()


def split_list(value: str | None) -> list[str]:
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def build_filters(types: str | None, states: str | None, severities: str | None, saas: str | None) -> dict[str, Any]:
    """The `requestData` filter keys; omitted filters mean "all" (as Elastic and Sentinel rely on)."""
    filters: dict[str, Any] = {}
    type_list = [token(t) for t in split_list(types)]
    if type_list:
        filters["eventTypes"] = type_list
    state_list = [token(s) for s in split_list(states)]
    unknown = [s for s in state_list if s not in STATES]
    if unknown:
        raise ConfigError(f"unknown --states value(s): {', '.join(unknown)}", f"use {', '.join(STATES)}")
    if state_list:
        filters["eventStates"] = state_list
    severity_list = []
    for item in split_list(severities):
        number = parse_severity(item)
        if number is not None:
            severity_list.append(number)
        else:
            raise ConfigError(
                f"unknown --severities value {item!r}", "use 1-5 or very_low, low, medium, high, critical"
            )
    if severity_list:
        filters["severities"] = sorted(set(severity_list))
    saas_list = [token(s) for s in split_list(saas)]
    if saas_list:
        filters["saas"] = saas_list
    return filters
