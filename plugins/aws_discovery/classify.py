"""Pure classification: one EC2 instance (as DescribeInstances returns it) -> an inventory entry.

No I/O, no clock: the caller passes the instance dict, its region and the `Selection` (selected
tags, default user/key, known keys, site). The result is an *entry*: the inventory record without
`op` and `observed_at`, which the diff adds.

Rules (seed "Automatic Adding Remote Servers with Service Discovery Tools"):
- an instance is integrated when it holds ANY selected tag (OR across `--tags` entries; `KEY`
  matches any value, `KEY=VALUE` that exact value); `Name` and `checkpoint_ssh:*` never select;
- Windows (`Platform == "windows"`) -> `{"type": "rdp", "auth": "direct"}`;
- Linux -> `{"type": "ssh", "auth": "managed", "users": [...]}` with one user per tag
  `checkpoint_ssh:<user>` = `<key>.pem`, or the default user/key when it has no such tag;
- a Linux instance with no usable user is unconfigured (`app` null, `reasons` say why). When it
  has checkpoint_ssh tags but none is usable the default is NOT used: the owner named users
  explicitly, and silently logging in as someone else would be wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SSH_TAG_PREFIX = "checkpoint_ssh:"
NAME_TAG = "Name"
KEY_SUFFIX = ".pem"
# Linux login names: portable POSIX user names (useradd's default rule, plus upper case).
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
# Fields of an entry compared between cycles; a difference is an `update`.
COMPARED_FIELDS = ("vpc_id", "name", "platform", "private_ip", "public_ip", "state", "tags", "app")


def is_reserved_tag(key: str) -> bool:
    """`Name` and `checkpoint_ssh:*` are never selectable (the seed does not fetch them)."""
    return key == NAME_TAG or key.startswith(SSH_TAG_PREFIX)


def key_name(value: str) -> str:
    """`deploy.pem` -> `deploy`: keys are compared and reported by name, without `.pem`."""
    value = value.strip()
    return value[: -len(KEY_SUFFIX)] if value.lower().endswith(KEY_SUFFIX) else value


@dataclass(frozen=True)
class TagSelector:
    """One `--tags` entry: `KEY` (any value) or `KEY=VALUE` (exactly that value)."""

    key: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> TagSelector:
        """Split at the first `=`; raises ValueError for empty or reserved keys."""
        key, sep, value = text.partition("=")
        key = key.strip()
        if not key:
            raise ValueError(f"tag selector {text!r} has an empty key")
        if is_reserved_tag(key):
            raise ValueError(f"tag {key!r} cannot be selected: Name and checkpoint_ssh:* tags never select instances")
        return cls(key, value if sep else None)

    def matches(self, tags: Mapping[str, str]) -> bool:
        if self.key not in tags:
            return False
        return self.value is None or tags[self.key] == self.value

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True)
class Selection:
    """What the user configured for one integration (one site)."""

    tags: tuple[TagSelector, ...]
    site: str | None = None
    default_user: str | None = None
    default_key: str | None = None
    known_keys: frozenset[str] | None = None  # None: every key is accepted
    selected_keys: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "selected_keys", frozenset(t.key for t in self.tags))

    def is_selected(self, tags: Mapping[str, str]) -> bool:
        return any(selector.matches(tags) for selector in self.tags)

    def selected_tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """The instance's tags that match a selector (the record's `tags`).

        With `--tags env=prod --tags team`, an instance holding env=dev and team=x shows only
        `{"team": "x"}`: env=dev is not a selected tag, only the key is shared.
        """
        return {
            k: tags[k]
            for k in sorted(self.selected_keys)
            if k in tags and any(s.key == k and s.value in (None, tags[k]) for s in self.tags)
        }

    def key_known(self, key: str) -> bool:
        return self.known_keys is None or key in self.known_keys


def tag_dict(instance: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in instance.get("Tags") or () if "Key" in t}


def platform_of(instance: Mapping[str, Any]) -> str:
    """`Platform` is "windows" for Windows and absent otherwise (PlatformDetails is billing text)."""
    return "windows" if str(instance.get("Platform") or "").lower() == "windows" else "linux"


def ssh_users(tags: Mapping[str, str], selection: Selection) -> tuple[list[dict[str, str]], list[str]]:
    """Users from `checkpoint_ssh:<user>` tags, and the reasons each unusable tag was skipped."""
    users: list[dict[str, str]] = []
    reasons: list[str] = []
    for tag_key in sorted(k for k in tags if k.startswith(SSH_TAG_PREFIX)):
        user = tag_key[len(SSH_TAG_PREFIX) :].strip()
        key = key_name(tags[tag_key])
        if not _USER_RE.match(user):
            reasons.append(f"tag {tag_key!r} does not name a valid Linux user")
        elif not key:
            reasons.append(f"tag {tag_key!r} has no key name (expected <key-name>.pem)")
        elif not selection.key_known(key):
            reasons.append(f"tag {tag_key!r} names key {key!r}, which is not in --known-keys")
        else:
            users.append({"user": user, "key": key})
    return users, reasons


def classify(instance: Mapping[str, Any], region: str, selection: Selection) -> dict[str, Any] | None:
    """The inventory entry for `instance`, or None when it holds no selected tag."""
    tags = tag_dict(instance)
    if not selection.is_selected(tags):
        return None
    platform = platform_of(instance)
    app: dict[str, Any] | None
    reasons: list[str] = []
    if platform == "windows":
        app = {"type": "rdp", "auth": "direct"}
    else:
        has_ssh_tags = any(k.startswith(SSH_TAG_PREFIX) for k in tags)
        users, reasons = ssh_users(tags, selection)
        if not has_ssh_tags and selection.default_user and selection.default_key:
            users = [{"user": selection.default_user, "key": selection.default_key}]
        elif not has_ssh_tags:
            reasons = ["no checkpoint_ssh:<user> tag and no --default-user/--default-key"]
        if users:
            app = {"type": "ssh", "auth": "managed", "users": users}
            reasons = []  # usable users exist: partly bad tags do not block the instance
        else:
            app = None
    entry: dict[str, Any] = {
        "site": selection.site,
        "region": region,
        "vpc_id": instance.get("VpcId"),
        "instance_id": instance["InstanceId"],
        "name": tags.get(NAME_TAG) or None,
        "platform": platform,
        "private_ip": instance.get("PrivateIpAddress") or None,
        "public_ip": instance.get("PublicIpAddress") or None,
        "state": (instance.get("State") or {}).get("Name"),
        "tags": selection.selected_tags(tags),
        "app": app,
    }
    if app is None:
        entry["reasons"] = reasons
    return entry


def is_configured(entry: Mapping[str, Any]) -> bool:
    return entry.get("app") is not None


def count_selectable_tags(
    instances: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str | None], int]:
    """Instance counts per selectable tag: `(key, None)` for any value and `(key, value)`.

    `Name` and `checkpoint_ssh:*` are left out; a tag no instance holds cannot appear (the
    counts come from the instances themselves, not from DescribeTags, which also lists tags
    of stopped and terminated instances).
    """
    counts: dict[tuple[str, str | None], int] = {}
    for instance in instances:
        for key, value in tag_dict(instance).items():
            if is_reserved_tag(key):
                continue
            counts[(key, None)] = counts.get((key, None), 0) + 1
            counts[(key, value)] = counts.get((key, value), 0) + 1
    return counts
