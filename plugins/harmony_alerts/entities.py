"""HEC `data` sentences: the embedded `#{"entity_id": …, "entity_type": …, "label": …}` entities
parsed into typed facts (who sent what to whom, which engine said what, where a login came from).

`data` is the event's `description` with each named thing replaced by a JSON placeholder:

    #{"entity_id": "6fd3…", "entity_type": "avanan_ap_scan", "label": "Phishing"} attempt detected
    in an email from #{"entity_id": null, "entity_type": "google_user", "disable_link": true,
    "label": "info@example.in"} - '#{…"label": "Support: Link"}' (#{…"label": "alex@example.com"}'s mailbox)

Parsing is two steps. `split_data` finds each `#{` and reads one JSON object from there with the
standard library's C scanner (`raw_decode`), so braces and quotes inside labels, nested
`tooltip_fields` and escapes are handled by a real JSON parser; a `#{` that does not start a JSON
object is kept as text. Then the sentence, with every entity replaced by one marker character, is
matched against the known sentence shapes (`SHAPES`), which name each entity's role. The shapes
are those Elastic's `checkpoint_email` ingest pipeline recognises (its grok patterns 1-5, so our
ECS fields equal its values on the same event) plus the ones it leaves unparsed: geo-suspicious
logins, shadow IT and DLP leaks.

Each sentence template is matched only once: the skeleton (the sentence with its placeholders
abstracted) keys a bounded cache of *plans* (shape, which entity plays which role), and
`data_details` builds the alert's `details` from the plan and this event's entities; `parse_data`
returns `DataFacts` from the same plans.

Pure and total: any string in, a `DataFacts` out (None when no known sentence is recognised);
malformed placeholders never raise. Callers run it only when `data` contains `#{` (the hot path stays flat).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

MARK = "\ue000"  # stands for one entity in the sentence skeleton (private use: never in real text)
UNKNOWN_LABEL = "<Unknown>"  # HEC's label for an unresolved mailbox; Elastic ignores it, so do we

_decoder = json.JSONDecoder()
_raw_decode = _decoder.raw_decode
# The API's usual placeholder, with no escape in any string: read by this one regex (C speed);
# any other form (escapes, extra keys such as tooltip_fields, other key order) by the JSON parser.
_PLAIN_BODY = (  # between `#{` and `}`; groups: id, type, label
    r'"entity_id": (?:null|"([^"\\]*)"), "entity_type": "([^"\\]*)", (?:"disable_link": (?:true|false), )?'
    r'"label": "([^"\\]*)"'
)
_PLAIN = r"#\{" + _PLAIN_BODY + r"\}"
# A user report names its reporter in a richer form: `#{"display": "embedded-entity", "entity_id":
# …, "label": …, "entity_type": …, "tooltip_fields": [{"type": "text", "value": …, "key": …}]}`.
# Read as the plain form or this one by one more regex pass, in the API's exact layout and with
# strings a JSON parser accepts (no escape, no control character); anything else goes to the parser.
_TEXT = r'([^"\\\x00-\x1f]*)'
_STR = rf'"{_TEXT[1:-1]}"'  # any JSON string without escapes (no group)
_OBJECT = rf"\{{{_STR}: {_STR}(?:, {_STR}: {_STR})*\}}"  # a flat object of strings
_RICH = (
    r"#\{(?:" + _PLAIN_BODY + "|"  # the plain form (groups 1-3: id, type, label), or the rich one:
    rf'"display": {_STR}, "entity_id": (?:null|"{_TEXT}"), "label": "{_TEXT}", "entity_type": "{_TEXT}", '
    rf'"tooltip_fields": \[(?:{_OBJECT}(?:, {_OBJECT})*)?\]'  # (groups 4-6: id, label, type)
    r")\}"
)


class Entity(NamedTuple):
    """One `#{…}` placeholder: the SaaS object it links to and the text shown for it.
    (A NamedTuple, not a frozen dataclass: built once per placeholder on the alerts hot path.)"""

    entity_id: str | None
    entity_type: str | None
    label: str | None


class Login(NamedTuple):
    """A login named by a geo event: what happened, from which country, from which address."""

    action: str | None
    country: str | None = None
    ip: str | None = None
    entity_id: str | None = None

    def to_json(self) -> dict[str, str]:
        pairs = (("action", self.action), ("country", self.country), ("ip", self.ip), ("entity_id", self.entity_id))
        return {k: v for k, v in pairs if v is not None}


@dataclass(slots=True)
class DataFacts:
    """What a `data` sentence says, by role; `shape` names the sentence form."""

    shape: str
    scan: Entity | None = None  # the verdict and the engine that gave it (avanan_ap_scan, ...)
    sender: str | None = None  # the sender as the sentence shows it (address or domain)
    subject: str | None = None
    email_id: str | None = None  # the email entity's id (HEC's id of the message)
    recipient: str | None = None  # the mailbox the email reached, or the user who reported it
    recipient_id: str | None = None
    user: str | None = None  # the account the event is about (geo, shadow IT, a DLP leak's owner)
    user_id: str | None = None
    action: str | None = None  # "logged in", "performed activity (login_success)"
    country: str | None = None  # where the (last) login came from
    ip: str | None = None
    logins: list[Login] = field(default_factory=list)
    app: str | None = None  # the shadow-IT application
    leak: str | None = None  # what a DLP engine found (PII, ...)

    def to_json(self) -> dict[str, Any]:
        """The native alert's `details` object: the facts found, absent keys left out."""
        out: dict[str, Any] = {"shape": self.shape}
        if self.scan is not None:
            scan = {"engine": self.scan.entity_type, "verdict": self.scan.label, "id": self.scan.entity_id}
            out["scan"] = {k: v for k, v in scan.items() if v is not None}
        for name in _TEXT_FACTS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.logins:
            out["logins"] = [login.to_json() for login in self.logins]
        return out


_TEXT_FACTS = (
    "sender", "subject", "email_id", "recipient", "recipient_id", "user", "user_id", "action", "country", "ip",
    "app", "leak",
)  # fmt: skip


def _text(value: Any) -> str | None:
    """A label or id as text: strings as they are (lone surrogates replaced), numbers as text."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = value if type(value) is str else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone \ud83d escape: JSON can hold it, UTF-8 output cannot
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def split_data(data: str) -> tuple[str, list[Entity]]:
    """The sentence with each entity replaced by `MARK`, and the entities in order of appearance."""
    if MARK in data:
        data = data.replace(MARK, "\ufffd")
    parts: list[str] = []
    entities: list[Entity] = []
    pos = 0
    find = data.find
    plain_match = _regexes().plain.match  # (measured: faster than one sub + findall pass in C)
    while True:
        at = find("#{", pos)
        if at < 0:
            break
        plain = plain_match(data, at)
        if plain is not None:
            parts.append(data[pos:at])
            parts.append(MARK)
            entity_id, entity_type, label = plain.groups()
            entities.append(Entity(entity_id or None, entity_type, label))
            pos = plain.end()
            continue
        try:
            value, end = _raw_decode(data, at + 1)
        except (ValueError, RecursionError):  # not a JSON object from here: keep it as text
            parts.append(data[pos : at + 2])
            pos = at + 2
            continue
        if not isinstance(value, dict):  # cannot happen from "{", but a decoder hook might
            parts.append(data[pos : at + 2])
            pos = at + 2
            continue
        parts.append(data[pos:at])
        parts.append(MARK)
        entities.append(
            Entity(_text(value.get("entity_id")) or None, _text(value.get("entity_type")), _text(value.get("label")))
        )
        pos = end
    parts.append(data[pos:])
    return "".join(parts), entities


_M = MARK
_MAIL_TAIL = rf" in an email from {_M} - '{_M}' \({_M}'s mailbox\)$"
# (name, a phrase the sentence must contain, pattern over the skeleton, roles of the entities in
# order). Names 1-5 follow Elastic's grok patterns in order; the first that matches wins, as in
# grok. The phrase is a cheap test that spares the regex for most sentences.
SHAPES: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        "email_threat",
        " in an email from ",
        rf"^{_M} attempt detected{_MAIL_TAIL}",
        ("scan", "sender", "subject", "to"),
    ),
    (
        "email_threat",
        " in an email from ",
        rf"^(?P<pre>.*?)(?:A user|has detected) {_M}{_MAIL_TAIL}",
        ("scan", "sender", "subject", "to"),
    ),
    (
        "malicious_attachment",
        "malicious attachment(s)",
        rf"^(?P<pre>.*?) has detected malicious attachment\(s\) in '{_M}' \({_M}'s mailbox\)$",
        ("subject", "to"),
    ),
    (
        "user_report",
        " reported a phishing email ",
        rf"^User {_M} reported a phishing email {_M}$",
        ("to", "subject"),
    ),
    (
        "geo_first_login",
        "Unusual geo activity for ",
        rf"^Unusual geo activity for {_M}: {_M} for the first time from (?P<country>.*?)$",
        ("user", "action"),
    ),
    # beyond Elastic's patterns
    (
        "geo_suspicious",
        " performed geo-suspicious events: ",
        rf"^{_M} performed geo-suspicious events: (?P<logins>.*)$",
        ("user",),
    ),
    ("shadow_it", " is using ", rf"^{_M} - {_M} is using {_M}$", ("kind", "user", "app")),
    (
        "dlp_leak",
        " leak in '",
        rf"^{_M} has detected {_M} leak in '{_M}' \({_M}'s mailbox\)$",
        ("scan", "leak", "subject", "user"),
    ),
]
# one login of a geo-suspicious sentence: `#{login} from India (89.160.20.112)`
_LOGIN = rf"{_M} from (?P<country>[^{_M}]*?) \((?P<ip>[^()]*)\)"


def _known(label: str | None) -> str | None:
    return None if label is None or label == UNKNOWN_LABEL or label == "" else label


class _Regexes(NamedTuple):
    plain: re.Pattern[str]
    plain_unescaped: re.Pattern[str]  # the same for a sentence with no backslash at all (simpler classes: ~25% faster)
    rich: re.Pattern[str]  # the plain form or a user report's richer one
    phrases: tuple[str, ...]  # every known sentence's phrase, tested before anything else
    shapes: list[tuple[str, str, re.Pattern[str], tuple[str, ...]]]
    login: re.Pattern[str]


@cache
def _regexes() -> _Regexes:
    """Compiled on first use, not at import: start-up stays cheap for runs that never parse."""
    phrases = dict.fromkeys(phrase for _, phrase, _, _ in SHAPES)
    return _Regexes(
        re.compile(_PLAIN),
        re.compile(_PLAIN.replace('[^"\\\\]', '[^"]')),
        re.compile(_RICH),
        tuple(phrases),
        [(name, phrase, re.compile(pattern, re.S), roles) for name, phrase, pattern, roles in SHAPES],
        re.compile(_LOGIN),
    )


class _Plan:
    """What one sentence template says, worked out once from its skeleton (see `_plan_of`).
    (A slotted class, not a NamedTuple: creating a NamedTuple class costs ~1 ms of start-up.)"""

    __slots__ = ("country", "match", "roles", "scan", "shape", "steps")

    def __init__(
        self,
        shape: str,
        roles: tuple[tuple[str, int], ...],
        country: str | None,
        scan: int,
        steps: tuple[tuple[str, int, Any], ...],
        match: re.Match[str] | None = None,
    ) -> None:
        self.shape = shape
        self.roles = roles  # (role, index of its entity): the DataFacts assignments
        self.country = country  # geo_first_login: the country is text of the skeleton, not an entity
        self.scan = scan  # where the scan entity's fields start (see _split_and_plan), -1 when none
        self.steps = steps  # `details` keys in output order: (key, how, fields index | value)
        self.match = match  # geo_suspicious only (never cached): its logins are skeleton text


# how a `details` value is read from its entity (the rules of `_assign`, as data)
_LABEL, _KNOWN, _ID, _ID_IF_KNOWN, _VALUE = range(5)
_ROLE_STEPS: dict[str, tuple[tuple[str, int], ...]] = {
    "sender": (("sender", _KNOWN),),
    "subject": (("subject", _LABEL), ("email_id", _ID)),
    "to": (("recipient", _KNOWN), ("recipient_id", _ID_IF_KNOWN)),
    "user": (("user", _KNOWN), ("user_id", _ID_IF_KNOWN)),
    "action": (("action", _LABEL),),
    "app": (("app", _LABEL),),
    "leak": (("leak", _LABEL),),
}
_KEY_ORDER = {name: i for i, name in enumerate(_TEXT_FACTS)}

# The plan cache: skeleton -> plan. Real traffic has a dozen templates (the skeleton abstracts every
# placeholder's value away, so two events of one kind share it); geo-suspicious skeletons carry
# per-event text (addresses, minutes) and unknown sentences may, so neither is ever kept, and the
# cache is emptied when it reaches PLAN_CACHE_MAX (a flood of odd templates costs one re-plan
# each, never memory). Measured on the alerts corpus (benchmarks/gen_corpus.py --alerts): ~9 µs a
# sentence before (~5 splitting the placeholders, the rest the phrase search, matching SHAPES and
# building the facts), ~5 µs with plans and the one-pass split.
PLAN_CACHE_MAX = 512
_plans: dict[str, _Plan] = {}


def _plan_of(skeleton: str, cache: bool = True) -> _Plan | None:
    """The plan of one skeleton: the first shape (in SHAPES order) that matches it with enough
    entities for its roles; None for no known sentence. Cached unless it carries per-event text."""
    if cache:
        plan = _plans.get(skeleton)
        if plan is not None:
            return plan
    plan = _make_plan(skeleton)
    if cache and plan is not None and plan.match is None:
        if len(_plans) >= PLAN_CACHE_MAX:
            _plans.clear()
        _plans[skeleton] = plan
    return plan


def _make_plan(skeleton: str) -> _Plan | None:
    entity_count = skeleton.count(MARK)
    for name, phrase, pattern, roles in _regexes().shapes:
        if phrase not in skeleton:
            continue
        match = pattern.match(skeleton)
        if match is None:
            continue
        if name == "geo_suspicious":
            return _Plan(name, (("user", 0),), None, -1, (), match)
        # entities inside a free-text part before the known words (Elastic's leading %{DATA})
        # are not the ones the roles name
        offset = match.group("pre").count(MARK) if "pre" in pattern.groupindex else 0
        if entity_count - offset < len(roles):
            continue
        indexed = tuple((role, offset + i) for i, role in enumerate(roles))
        country = (match.group("country").strip() or None) if name == "geo_first_login" else None
        steps: dict[str, tuple[str, int, Any]] = {}
        scan = -1
        for role, index in indexed:
            at = 4 * index + 1  # where the entity's fields start (see _split_and_plan)
            if role == "scan":
                scan = at
            for key, how in _ROLE_STEPS.get(role, ()):
                steps[key] = (key, how, at)
        if country is not None:
            steps["country"] = ("country", _VALUE, country)
        ordered = tuple(sorted(steps.values(), key=lambda step: _KEY_ORDER[step[0]]))
        return _Plan(name, indexed, country, scan, ordered)
    return None


def _split_and_plan(data: str, cache: bool) -> tuple[_Plan, list[str | None]] | None:
    """The sentence's plan and its entities' fields, flat: entity k's id, type and label are
    `fields[4k + 1 : 4k + 4]` (the layout `re.split` gives)."""
    regexes = _regexes()
    if cache:
        if "#{" not in data:  # no placeholder: no entity, nothing a plan could name
            return None
        # The usual case, in one C pass: every placeholder in the API's plain form. `re.split`
        # gives [text, id, type, label, text, ...]. A `#{` left in the text is a user report's
        # richer form (9 % of events; one more pass reads both forms), or escapes, other layouts
        # or text: those go to split_data's loop, which decides each `#{` the same way.
        text = data.replace(MARK, "\ufffd") if MARK in data else data
        fields = (regexes.plain if "\\" in data else regexes.plain_unescaped).split(text)
        skeleton = MARK.join(fields[::4])
        if "#{" in skeleton:
            fields = _rich_fields(regexes.rich.split(text))
            skeleton = MARK.join(fields[::4])
        if len(fields) > 1 and "#{" not in skeleton:
            plan = _plans.get(skeleton)  # a known template: its phrase is in the skeleton, so in data
            if plan is None:
                if not _has_phrase(data, regexes.phrases):
                    return None
                plan = _plan_of(skeleton, True)
            return None if plan is None else (plan, fields)
    if not _has_phrase(data, regexes.phrases):  # no known sentence: nothing to split
        return None
    skeleton, entities = split_data(data)
    if not entities:
        return None
    plan = _plan_of(skeleton, cache)
    if plan is None:
        return None
    fields = [None]
    for entity in entities:
        fields += (*entity, None)
    return plan, fields


def _rich_fields(split: list[str | None]) -> list[str | None]:
    """`_RICH`'s split (text, then six groups per entity: the plain form's id, type and label, the
    rich form's id, label and type) in the plain split's layout (text, id, type, label, ...)."""
    fields = [split[0]]
    for at in range(1, len(split), 7):
        if split[at + 1] is not None:  # the plain form: its type group always takes part
            fields += (split[at], split[at + 1], split[at + 2], split[at + 6])
        else:
            fields += (split[at + 3], split[at + 5], split[at + 4], split[at + 6])
    return fields


def _has_phrase(data: str, phrases: tuple[str, ...]) -> bool:
    """Whether `data` holds a known sentence's phrase (`in` per phrase: 4x faster than one regex
    alternation)."""
    return any(phrase in data for phrase in phrases)


def _entities(fields: list[str | None]) -> list[Entity]:
    return [Entity(fields[at] or None, fields[at + 1], fields[at + 2]) for at in range(1, len(fields) - 2, 4)]


def parse_data(data: str, cache: bool = True) -> DataFacts | None:
    """The facts of one `data` sentence, or None when it is not a sentence shape we know.
    (`cache=False` splits with split_data's loop and works the plan out afresh: the reference the
    tests hold the cache and the one-pass split to.)"""
    found = _split_and_plan(data, cache)
    if found is None:
        return None
    plan, fields = found
    entities = _entities(fields)
    facts = DataFacts(plan.shape)
    if plan.match is not None:
        return _geo_suspicious(facts, plan.match, entities)
    for role, index in plan.roles:
        _assign(facts, role, entities[index])
    if plan.country is not None:
        facts.country = plan.country
    return facts


def data_details(data: str) -> dict[str, Any] | None:
    """`parse_data(data).to_json()` (the native alert's `details`), built straight from the
    sentence's cached plan: one split, one dict lookup, then only this event's values. A new dict
    on every call (callers add to it)."""
    found = _split_and_plan(data, True)
    if found is None:
        return None
    plan, fields = found
    if plan.match is not None:
        return _geo_suspicious(DataFacts(plan.shape), plan.match, _entities(fields)).to_json()
    out: dict[str, Any] = {"shape": plan.shape}
    at = plan.scan
    if at >= 0:
        entity_id, engine, verdict = fields[at] or None, fields[at + 1], fields[at + 2]
        scan = {}
        if engine is not None:
            scan["engine"] = engine
        if verdict is not None:
            scan["verdict"] = verdict
        if entity_id is not None:
            scan["id"] = entity_id
        out["scan"] = scan
    for key, how, at in plan.steps:
        if how == _VALUE:
            out[key] = at
            continue
        if how == _LABEL:
            value = fields[at + 2] or None
        elif how == _KNOWN:
            label = fields[at + 2]
            value = None if label == UNKNOWN_LABEL else label or None
        elif how == _ID:
            value = fields[at] or None
        else:  # _ID_IF_KNOWN
            label = fields[at + 2]
            value = None if label == UNKNOWN_LABEL or not label else fields[at] or None
        if value is not None:
            out[key] = value
    return out


def _assign(facts: DataFacts, role: str, entity: Entity) -> None:
    label = entity.label
    if role == "scan":
        facts.scan = entity
    elif role == "sender":
        facts.sender = _known(label)
    elif role == "subject":
        facts.subject = label or None
        facts.email_id = entity.entity_id or None
    elif role == "to":
        facts.recipient = _known(label)
        facts.recipient_id = (entity.entity_id or None) if facts.recipient else None
    elif role == "user":
        facts.user = _known(label)
        facts.user_id = (entity.entity_id or None) if facts.user else None
    elif role == "action":
        facts.action = label or None
    elif role == "app":
        facts.app = label or None
    elif role == "leak":
        facts.leak = label or None


def _geo_suspicious(facts: DataFacts, match: re.Match[str], entities: list[Entity]) -> DataFacts:
    """`#{user} performed geo-suspicious events: #{login} from India (1.2.3.4) and after 9 minutes
    #{login} from United States (5.6.7.8)`: each login in order; the last one is the event's."""
    tail = match.group("logins")
    logins = []
    for index, found in enumerate(_regexes().login.finditer(tail), start=1):
        if index >= len(entities):
            break
        entity = entities[index]
        country, ip = found.group("country").strip() or None, found.group("ip").strip() or None
        logins.append(Login(entity.label or None, country, ip, entity.entity_id or None))
    _assign(facts, "user", entities[0])
    facts.logins = logins
    if logins:
        last = logins[-1]
        facts.action, facts.country, facts.ip = last.action, last.country, last.ip
    return facts
