"""The HEC vocabulary, once: severities, event types, states, SaaS names and event time parsing.

harmony-events (filters, cursor), harmony-alerts (normalize, formats) and hec-emulator (query
filters, generator) all read these tables, so a spelling the API uses is accepted everywhere or
nowhere. Sources: the API reference (shared/reference/harmony-email-api.md §2.3-2.5), Check Point's
Cortex XSOAR pack `CheckPointHEC` (its fetch filters offer the states New/Remediated/Detected/
Exception/Dismissed, the severities Very Low..Critical, the 12 threat types below and the SaaS
labels Microsoft Exchange/Gmail) and Elastic's `checkpoint_email` pipeline (severity_enum
Lowest..Critical). Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

# -- severity ------------------------------------------------------------------------------------

# The native labels (Check Point's own, as XSOAR shows and filters them).
SEVERITY_LABELS: dict[int, str] = {1: "Very Low", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
# Elastic's `checkpoint_email.event.severity_enum` for the same numbers.
ELASTIC_SEVERITY_ENUM: dict[int, str] = {1: "Lowest", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
# Every name seen on the wire or in a filter, as a token (lower case, `_` for spaces and dashes):
# the native labels, Elastic's enum, the severityChange action's labels (Low..Highest) and the
# spellings other tools send (informational, very high).
SEVERITY_NAMES: dict[str, int] = {
    "very_low": 1, "verylow": 1, "lowest": 1, "informational": 1, "info": 1,
    "low": 2,
    "medium": 3,
    "high": 4,
    "critical": 5, "highest": 5, "very_high": 5,
}  # fmt: skip
SEVERITY_STRINGS: dict[str, int] = {str(n): n for n in SEVERITY_LABELS}  # the wire form "1".."5"


def token(value: str) -> str:
    """`Suspicious malware`, `shadow-IT`, ` Very  Low ` → `suspicious_malware`, `shadow_it`, `very_low`."""
    return "_".join(value.lower().replace("-", " ").split())


def parse_severity(value: Any) -> int | None:
    """ "1".."5", 1..5, or a name (Very Low/Low/Medium/High/Critical/Highest/...) → 1..5, else None."""
    found = SEVERITY_STRINGS.get(value) if type(value) is str else None
    if found is not None:
        return found
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not 1 <= value <= 5:  # also NaN and ±inf, which int() would refuse
            return None
        number = int(value)
        return number if number == value else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():  # "²".isdigit() is True, and int("²") raises
            number = int(text)
            return number if 1 <= number <= 5 else None
        return SEVERITY_NAMES.get(token(text))
    return None


# -- event types, states, SaaS -------------------------------------------------------------------

# The 12 threat types the API filters on (XSOAR's options, sent lower case with underscores), with
# Check Point's display label for each.
EVENT_TYPE_LABELS: dict[str, str] = {
    "phishing": "Phishing",
    "suspicious_phishing": "Suspicious Phishing",
    "malware": "Malware",
    "suspicious_malware": "Suspicious Malware",
    "spam": "Spam",
    "graymail": "Graymail",
    "dlp": "DLP",
    "anomaly": "Anomaly",
    "shadow_it": "Shadow IT",
    "alert": "Alert",  # a user-reported phishing email (confidenceIndicator "alert")
    "malicious_url": "Malicious URL",
    "malicious_url_click": "Malicious URL Click",
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_TYPE_LABELS)
# Types whose event is about a mail or file carrying malware (Elastic adds event.category malware).
MALWARE_TYPES = frozenset({"malware", "suspicious_malware"})
# Types about an account's behaviour rather than a message (Elastic: category threat, type indicator).
ACCOUNT_TYPES = frozenset({"anomaly", "shadow_it"})

# Lifecycle states: the six of the API's filter list plus `in_progress` (seen in a client's
# interface; the filter accepts it).
STATES: tuple[str, ...] = ("new", "detected", "in_progress", "pending", "remediated", "dismissed", "exception")

# SaaS names of the search API's list (`google_drive` appears in third-party lists only).
SAAS: tuple[str, ...] = (
    "office365_emails", "office365_onedrive", "office365_sharepoint", "google_mail", "google_drive",
    "ms_teams", "slack", "box", "dropbox", "sharefile",
)  # fmt: skip
SAAS_LABELS: dict[str, str] = {"office365_emails": "Microsoft Exchange", "google_mail": "Gmail"}

CONFIDENCE_INDICATORS: tuple[str, ...] = (
    "malicious", "suspicious", "detected", "alert", "malicious_url", "suspicious_phishing",
)  # fmt: skip


def type_key(event_type: str) -> str:
    """`Suspicious malware` (Elastic's spelling) and `suspicious_malware` (the API's) are one type."""
    return "_".join(event_type.lower().split())


# -- event time ----------------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_SEC = 1_000_000
_ONE_US = timedelta(microseconds=1)
_ONE_MS = timedelta(milliseconds=1)
# the instants an ISO 8601 UTC string can name (years 1..9999): outside them a "timestamp" is
# malformed input, and would crash ISO formatting (ECS) or the 64-bit JSON encoder
MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // _ONE_MS
MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // _ONE_MS


def parse_iso_us(text: str) -> int:
    """ISO 8601 (with `Z`, an offset, or naive = UTC) as epoch microseconds; ValueError otherwise."""
    value = text.strip()
    if value.endswith(("z", "Z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - EPOCH) // _ONE_US


def event_time_us(value: object) -> int | None:
    """An event's `eventCreated` as epoch microseconds; None when missing or unparseable."""
    if type(value) is not str:
        return None
    try:  # fast path: the API's usual `2024-10-14T07:02:11.229935+00:00`
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            return parse_iso_us(value)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - EPOCH) // _ONE_US


def event_time_ms(value: Any) -> int | None:
    """eventCreated (ISO 8601 with or without fraction/offset, naive = UTC; or epoch s/ms) → epoch ms.

    None when missing, unparseable, or outside years 1..9999 UTC.
    """
    if type(value) is str:
        try:  # the C parser, then exact integer math (float timestamps drift past 2255)
            moment = datetime.fromisoformat(value)
        except ValueError:
            micros = event_time_us(value)
            found = None if micros is None else micros // 1000
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            since = moment - EPOCH  # its parts, not `// _ONE_MS`: a third of the cost, the same floor
            found = since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not MIN_MS <= value <= MAX_MS:  # also NaN, ±inf, -1e306 (whose * 1000 is -inf)
            return None
        # epoch seconds or milliseconds; anything after 1973 in ms is > 1e11
        found = int(value) if value > 1e11 else int(value * 1000)
    else:
        return None
    return found if found is not None and MIN_MS <= found <= MAX_MS else None
