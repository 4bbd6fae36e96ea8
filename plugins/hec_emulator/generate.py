"""Deterministic, realistic HEC security events (`--generate N --seed S`).

Pure: the same (count, seed, end time, span) always gives the same events. The shapes follow the
API reference (sections 2.3/2.4/6.4): the type/state/saas/confidence enumerations, `severity` as a
string digit, `data` with `#{...}` placeholders, `entityLink` with a base64 route, and the
field variations real collectors must survive — missing optional keys, a null `senderAddress`,
a domain-only sender, `eventCreated` without a fraction, the odd extra field (`attachmentMd5`).
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from harmony_pipes._core import hec

US_PER_SEC = 1_000_000

# (type, weight, confidence indicators, severities, entity_type inside `data`)
TYPES: list[tuple[str, int, tuple[str, ...], tuple[str, ...], str]] = [
    ("phishing", 20, ("malicious", "malicious", "suspicious"), ("4", "5", "5"), "avanan_ap_scan"),
    ("spam", 14, ("detected", "malicious"), ("2", "2", "4"), "avanan_ap_scan"),
    ("malware", 8, ("malicious",), ("4", "5"), "avanan_ap_scan"),
    ("suspicious_malware", 4, ("suspicious",), ("3", "4"), "avanan_ap_scan"),
    ("dlp", 10, ("malicious", "detected"), ("2", "3", "3"), "avanan_dlp"),
    ("anomaly", 8, ("detected",), ("3",), "office365_mgmnt_event"),
    ("shadow_it", 5, ("detected",), ("3", "2"), "av_dns_info"),
    ("alert", 6, ("alert",), ("3",), "office365_emails_email"),
    ("malicious_url", 6, ("malicious_url",), ("4",), "clicktime_protection_scan"),
    ("malicious_url_click", 3, ("malicious_url",), ("4", "5"), "clicktime_protection_scan"),
    ("suspicious_phishing", 8, ("suspicious_phishing",), ("3",), "ms_defender_scan"),
    ("graymail", 8, ("detected",), ("1", "2"), "avanan_ap_scan"),
]
STATES = hec.STATES  # new, detected, in_progress, pending, remediated, dismissed, exception
STATE_WEIGHTS = (30, 25, 3, 8, 20, 12, 5)
SAAS = ("office365_emails", "google_mail", "ms_teams", "slack", "office365_onedrive", "office365_sharepoint", "box")
SAAS_WEIGHTS = (55, 30, 5, 3, 3, 2, 2)
MAIL_ENTITY = {"office365_emails": "office365_emails_email", "google_mail": "google_mail_email"}
USER_ENTITY = {"google_mail": "google_user"}
ACTION_TYPES = {
    "phishing": ("quarantine_email", "restore_email", "move_to_spam", "phishing_found_event"),
    "malware": ("quarantine_email",),
    "suspicious_malware": ("quarantine_email",),
    "spam": ("move_to_spam", "add_spam_header"),
    "graymail": ("move_to_spam",),
    "alert": ("office365_emails_decline_report_phishing",),
    "malicious_url": ("quarantine_email",),
    "malicious_url_click": ("quarantine_email",),
    "suspicious_phishing": ("quarantine_email", "google_mail_email_change_subject"),
}
NEW_SEVERITIES = ("Low", "Medium", "High", "Highest")
OPTIONAL_KEYS = ("additionalData", "actions", "senderAddress", "entityLink", "availableEventActions")

_FIRST = ("alex", "maria", "li", "sam", "noa", "omar", "eva", "raj", "kim", "jon", "ana", "yuki")
_LAST = ("smith", "garcia", "chen", "cohen", "singh", "muller", "rossi", "kowalski", "dubois", "ito")
_DOMAINS = ("example.com", "example.org", "corp.example", "example.net")
_BAD_DOMAINS = ("example.in", "paypa1-secure.example", "invoices-mail.example", "dhl-track.example")
_SENDERS = ("info", "billing", "noreply", "hr")
_SUBJECTS = (
    "Support: Link", "Invoice #4471 overdue", "Your mailbox is full", "Shared document",
    "please see my credit data", "Payroll update", "Action required: verify account",
    "Meeting notes", "DHL delivery failed", "Q3 figures", "Password expires today",
)  # fmt: skip
_COUNTRIES = ("New Zealand", "Brazil", "Nigeria", "Vietnam", "Romania", "Peru")
# (domain, label shown for it): the shadow-IT application entity
_APPS = (
    ("wetransfer.com", "wetransfer.com (File Sharing)"), ("mega.nz", "mega.nz (File Sharing)"),
    ("dropbox.com", "dropbox.com (Cloud Storage)"), ("web.telegram.org", "web.telegram.org (Messaging)"),
)  # fmt: skip
# the verdict label of the Check Point scan entity, per type
_LABELS = {
    "phishing": "Phishing",
    "spam": "Spam",
    "graymail": "Graymail",
    "malware": "Malware",
    "suspicious_malware": "Suspected malware",
}
_LEAKS = ("PII", "PCI", "HIPAA", "Source code")


@lru_cache(maxsize=4096)
def _second_prefix(secs: int) -> str:
    return datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_created(epoch_us: int, with_fraction: bool = True) -> str:
    """`2024-10-14T07:02:11.229935+00:00`, or without the fraction like some real events."""
    secs, micros = divmod(epoch_us, US_PER_SEC)
    prefix = _second_prefix(secs)  # neighbouring events share their second: format it once
    if with_fraction:
        return f"{prefix}.{micros:06d}+00:00"
    return prefix + "+00:00"


def _placeholder(entity_id: str | None, entity_type: str, label: str, disable_link: bool = False) -> str:
    """A `#{...}` JSON placeholder as the API writes them inside `data` (spaces after : and ,)."""
    ident = "null" if entity_id is None else f'"{entity_id}"'
    link = '"disable_link": true, ' if disable_link else ""
    return f'#{{"entity_id": {ident}, "entity_type": "{entity_type}", {link}"label": {orjson.dumps(label).decode()}}}'


def _reporter(entity_id: str, entity_type: str, address: str) -> str:
    """The reporting user of a user-reported phishing event: the API's richer placeholder form."""
    tip = f'{{"type": "text", "value": "{address}", "key": "Email address"}}'
    return (
        f'#{{"display": "embedded-entity", "entity_id": "{entity_id}", "label": "{address}", '
        f'"entity_type": "{entity_type}", "tooltip_fields": [{tip}]}}'
    )


def _entity_link(entity_type: str, entity_id: str) -> str:
    route = base64.b64encode(f"profile/{entity_type}/{entity_id}".encode()).decode()
    return f"https://portal.checkpoint.com/dashboard/email&collaboration/CGS1?route={route}"


class EventGenerator:
    """One seeded stream of events; `make(created_us)` builds the next one."""

    def __init__(self, seed: int, customer_id: str = "exampletest") -> None:
        self.rng = random.Random(seed)
        self.customer_id = customer_id
        self._random = self.rng.random
        self._types = [t for t in TYPES for _ in range(t[1])]  # weighted pools: one random() per pick
        self._states = [s for s, w in zip(STATES, STATE_WEIGHTS, strict=True) for _ in range(w)]
        self._saas = [s for s, w in zip(SAAS, SAAS_WEIGHTS, strict=True) for _ in range(w)]

    def pick(self, seq: Any) -> Any:
        return seq[int(self._random() * len(seq))]

    def _hex(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def _user(self) -> str:
        return f"{self.pick(_FIRST)}.{self.pick(_LAST)}@{self.pick(_DOMAINS)}"

    def make(self, created_us: int) -> dict[str, Any]:
        """The next event, created at `created_us` (epoch microseconds)."""
        rng, pick = self.rng, self.pick
        etype, _, confidences, severities, scan_type = pick(self._types)
        saas = pick(self._saas)
        event_id, entity_id, scan_id = self._hex(), self._hex(), self._hex()
        user = self._user()
        sender: str | None = f"{pick(_SENDERS)}@{pick(_BAD_DOMAINS)}"
        subject = pick(_SUBJECTS)
        mail_type = MAIL_ENTITY.get(saas, "office365_emails_email")
        user_type = USER_ENTITY.get(saas, "office365_emails_user")
        with_fraction = self._random() >= 0.05
        google = saas == "google_mail"
        user_id = str(rng.getrandbits(68)) if google else str(uuid.UUID(int=rng.getrandbits(128)))
        user_ph = _placeholder(user_id, user_type, user)
        # The sentences as the API writes `data` (reference §6.4, Elastic's test events): the
        # scan verdict, the sender, the subject and the mailbox each a placeholder.
        if etype == "anomaly":
            entity_id = str(uuid.UUID(int=rng.getrandbits(128)))
            sender = None
            country = pick(_COUNTRIES)
            with_fraction = self._random() >= 0.5
            if google and self._random() < 0.6:  # Google: two logins far apart in a short time
                first, minutes = pick(_COUNTRIES), rng.randint(2, 30)
                ip1, ip2 = f"203.0.113.{rng.randint(1, 254)}", f"198.51.100.{rng.randint(1, 254)}"
                action = "performed activity (login_success)"
                login1 = _placeholder(self._hex(), "google_event_login", action)
                login2 = _placeholder(entity_id, "google_event_login", action)
                description = (
                    f"{user} performed geo-suspicious events: {action} from {first} ({ip1}) and after {minutes} "
                    f"minutes {action} from {country} ({ip2})"
                )
                data = (
                    f"{user_ph} performed geo-suspicious events: {login1} from {first} ({ip1}) and after {minutes} "
                    f"minutes {login2} from {country} ({ip2})"
                )
                link_type = "google_event_login"
            else:
                description = f"Unusual geo activity for {user}: logged in for the first time from {country}"
                login = _placeholder(entity_id, "office365_mgmnt_event", "logged in")
                data = f"Unusual geo activity for {user_ph}: {login} for the first time from {country}"
                link_type = "office365_mgmnt_event"
        elif etype == "alert":  # user-reported phishing: no sender, eventId == entityId
            entity_id = event_id
            sender = None
            description = f"User {user} reported a phishing email {subject}"
            data = f"User {_reporter(user_id, user_type, user)} reported a phishing email " + _placeholder(
                entity_id, mail_type, subject
            )
            link_type = mail_type
        elif etype == "dlp":
            leak = pick(_LEAKS)
            description = f"SmartDLP has detected {leak} leak in '{subject}' ({user}'s mailbox)"
            data = ""  # as in one real fixture line: some events carry no placeholders at all
            if self._random() < 0.8:
                data = (
                    f"{_placeholder(scan_id, scan_type, 'SmartDLP', True)} has detected "
                    f"{_placeholder(scan_id, scan_type, leak, True)} leak in "
                    f"'{_placeholder(entity_id, mail_type, subject)}' ({user_ph}'s mailbox)"
                )
            sender = user
            link_type = mail_type
        elif etype == "shadow_it":
            domain, app = pick(_APPS)
            sender = "google-workspace-alerts-noreply@google.com" if google else None
            description = f"Shadow IT - {user} is using {app}"
            data = (
                f"{_placeholder(event_id, mail_type, 'Shadow IT')} - {user_ph} is using "
                f"{_placeholder(domain, 'av_dns_info', app)}"
            )
            link_type = user_type
        else:
            sender_id = None if google else f"ext:{sender}"
            if etype == "suspicious_phishing":  # Microsoft's verdict: the sender is only a domain
                sender = pick(_BAD_DOMAINS)
                sender_id = None
                head = "Microsoft has detected suspicious_phishing"
                head_ph = f"Microsoft has detected {_placeholder(scan_id, 'ms_defender_scan', 'suspicious_phishing')}"
            elif etype in ("malicious_url", "malicious_url_click"):
                head = "A user clicked a malicious URL"
                head_ph = f"A user {_placeholder(scan_id, scan_type, 'clicked a malicious URL')}"
            else:
                label = _LABELS.get(etype, "Phishing")
                head = f"{label} attempt detected"
                head_ph = f"{_placeholder(scan_id, scan_type, label)} attempt detected"
            mailbox_ph = user_ph if self._random() >= 0.02 else _placeholder("", user_type, "<Unknown>")
            mailbox = user if mailbox_ph is user_ph else "<Unknown>"
            description = f"{head} in an email from {sender} - '{subject}' ({mailbox}'s mailbox)"
            data = (
                f"{head_ph} in an email from {_placeholder(sender_id, user_type, sender or '', True)} - "
                f"'{_placeholder(entity_id, mail_type, subject)}' ({mailbox_ph}'s mailbox)"
            )
            link_type = mail_type
        state = pick(self._states)
        actions: list[dict[str, str]] = []
        action_types = ACTION_TYPES.get(etype)
        if action_types and state in ("remediated", "exception", "dismissed", "detected"):
            at_us = created_us
            for i in range(rng.randint(1, len(action_types))):
                at_us += rng.randint(5, 90) * US_PER_SEC
                actions.append(
                    {
                        "actionType": action_types[i],
                        "createTime": format_created(at_us)[:-6] + "Z",
                        "relatedEntityId": event_id,
                    }
                )
        available: list[dict[str, Any]] | None = None
        if state in ("new", "detected", "pending") and self._random() < 0.6:
            available = [{"actionName": "dismiss", "actionParameter": {"eventId": event_id}}] + [
                {"actionName": "severityChange", "actionParameter": {"newSeverity": s}} for s in NEW_SEVERITIES
            ]
        event: dict[str, Any] = {
            "eventId": event_id,
            "customerId": self.customer_id,
            "saas": saas,
            "entityId": entity_id,
            "state": state,
            "type": etype,
            "confidenceIndicator": pick(confidences),
            "eventCreated": format_created(created_us, with_fraction),
            "severity": pick(severities),
            "description": description,
            "data": data,
            "additionalData": None,
            "availableEventActions": available,
            "actions": actions,
            "senderAddress": sender,
            "entityLink": _entity_link(link_type, entity_id),
        }
        if etype in ("malware", "suspicious_malware") and self._random() < 0.6:
            event["attachmentMd5"] = self._hex()  # the odd extra field (elastic/integrations#16311)
        if self._random() < 0.06:  # like the DLP fixture line: some optional keys simply absent
            for key in rng.sample(OPTIONAL_KEYS, rng.randint(1, 4)):
                del event[key]
        return event


def generate_events(
    count: int, seed: int, end_us: int, span_secs: float, customer_id: str = "exampletest"
) -> list[dict[str, Any]]:
    """`count` events with eventCreated spread (randomly, ascending) over `span_secs` before `end_us`.

    The offsets come from the seed too, so two runs with the same end time are identical and two
    runs at different times differ only by a constant shift of every timestamp.
    """
    if count <= 0:
        return []
    gen = EventGenerator(seed, customer_id)
    span_us = max(1, int(span_secs * US_PER_SEC))
    rand = random.Random(seed ^ 0x5EED).random
    offsets = sorted(int(rand() * span_us) for _ in range(count))
    start_us = end_us - span_us
    events = [gen.make(start_us + off + 1) for off in offsets]
    # An event written without its fraction reads as an earlier instant than the offset it was
    # made at, and may now precede its neighbour: order by what the eventCreated string says.
    events.sort(key=_created_sort_key)
    return events


def _created_sort_key(event: dict[str, Any]) -> str:
    """`YYYY-MM-DDTHH:MM:SS` + 6 fraction digits (`000000` when absent), as format_created writes."""
    created = event["eventCreated"]
    return created[:19] + (created[20:26] if created[19] == "." else "000000")
