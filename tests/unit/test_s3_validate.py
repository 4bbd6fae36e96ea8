"""s3-batch record validation: the Harness audit schema (seed 002, fixed) and user schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from harmony_pipes._core.errors import ConfigError, ExitCode
from harmony_pipes._core.processor import SkipRecord
from harmony_pipes._core.schemas import load_schema, schema_names, schema_path
from harmony_pipes.s3_batch.validate import build_validator

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = REPO_ROOT / "tests" / "fixtures" / "harness"

BROKEN = {
    "broken-missing-event-id.json": "harness-audit: missing auditEventId",
    "broken-missing-principal-identifier.json": ("harness-audit: missing auditEventAuthor.principal.identifier"),
    "broken-time-iso-string.json": (
        'harness-audit: auditEventTime matches none of its allowed forms, got "2024-11-25T02:00:00Z"'
    ),
    "broken-author-not-object.json": "harness-audit: auditEventAuthor must be object, got string",
    "broken-missing-account-identifier.json": "harness-audit: missing auditResourceScope.accountIdentifier",
    "broken-http-info-missing-client-ip.json": "harness-audit: missing auditHttpRequestInfo.clientIP",
    "broken-metadata-not-object.json": "harness-audit: auditEventMetadata must be object, got array",
}


def load(name: str) -> dict:
    return json.loads((HARNESS / name).read_text())


@pytest.fixture(scope="module")
def harness():
    return build_validator("harness-audit")


@pytest.mark.parametrize("name", ["audit-event-sample.json", "audit-event-minimal.json"])
def test_accepts_the_seed_sample(harness, name):
    assert harness(load(name)) is None


@pytest.mark.parametrize(("name", "reason"), sorted(BROKEN.items()))
def test_rejects_broken_variants_with_exact_reason(harness, name, reason):
    with pytest.raises(SkipRecord) as caught:
        harness(load(name))
    assert str(caught.value) == reason


def test_every_broken_fixture_is_covered():
    on_disk = {p.name for p in HARNESS.glob("broken-*.json")}
    assert on_disk == set(BROKEN)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.update(auditEventTime="1732500000123"), None),  # the seed declares a string
        (lambda r: r.update(auditEventTime=-1), "harness-audit: auditEventTime matches none"),
        (lambda r: r.update(auditEventTime=1.5), "harness-audit: auditEventTime matches none"),
        (lambda r: r.update(auditEventId=""), "harness-audit: auditEventId must not be empty"),
        (lambda r: r.update(auditModule=7), "harness-audit: auditModule must be string, got integer"),
        (
            lambda r: [r.pop("auditAction"), r.pop("auditModule")],
            "harness-audit: missing auditModule, auditAction",
        ),
        (lambda r: r.update(extraField={"kept": True}), None),  # extra fields are allowed
        (lambda r: r.pop("auditHttpRequestInfo"), None),  # optional per the seed
    ],
)
def test_field_rules(harness, mutate, reason):
    record = load("audit-event-sample.json")
    mutate(record)
    if reason is None:
        harness(record)
        return
    with pytest.raises(SkipRecord) as caught:
        harness(record)
    assert str(caught.value).startswith(reason)


def test_agrees_with_the_seed_schema_once_its_json_is_fixed():
    """The seed's own payload schema (commas fixed, draft-04) accepts what ours accepts, except
    that the seed types auditEventTime as a string while DESIGN says epoch ms (we take both)."""
    seed = load("seed-payload-schema.fixed.json")
    seed_validator = jsonschema.Draft4Validator(seed)
    assert not list(seed_validator.iter_errors(load("audit-event-minimal.json")))
    errors = list(seed_validator.iter_errors(load("audit-event-sample.json")))
    assert [list(e.path) for e in errors] == [["auditEventTime"]]
    ours = load_schema("harness-audit-event")
    assert ours["required"] == seed["required"]
    for name, prop in seed["properties"].items():
        if "required" in prop:
            assert ours["properties"][name]["required"] == prop["required"], name
    for name in BROKEN:
        if name != "broken-time-iso-string.json":
            assert list(seed_validator.iter_errors(load(name))), f"the seed schema accepts {name}"


@pytest.mark.parametrize("name", ["harness-audit-event", "s3-receipt"])
def test_schemas_are_valid_draft_2020_12(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_receipt_schema_accepts_a_receipt_and_rejects_a_partial_one():
    receipt = {
        "destination": "audit",
        "bucket": "logs",
        "key": "harness/dt=2024-11-25/20241125T020000Z_20241125T023000Z_20241125T023001Z_ab12cd34.json.gz",
        "records": 3,
        "bytes": 412,
        "raw_bytes": 1290,
        "first_time": "2024-11-25T02:00:00.123Z",
        "last_time": "2024-11-25T02:30:00Z",
        "written_at": "2024-11-25T02:30:01+00:00",
        "sha256": "0" * 64,
        "format": "json-array",
        "compression": "gzip",
    }
    validator = jsonschema.Draft202012Validator(load_schema("s3-receipt"), format_checker=jsonschema.FormatChecker())
    assert not list(validator.iter_errors(receipt))
    partial = dict(receipt)
    del partial["sha256"]
    assert [e.validator for e in validator.iter_errors(partial)] == ["required"]
    assert list(validator.iter_errors({**receipt, "written_at": "2024-11-25T02:30:01+02:00"}))


def test_user_schema_file(tmp_path):
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps({"type": "object", "required": ["tenantid"]}))
    check = build_validator(schema_path=str(path))
    check({"tenantid": "t1"})
    with pytest.raises(SkipRecord) as caught:
        check({"other": 1})
    assert str(caught.value) == "tenant.json: missing tenantid"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kind": "harness"}, "unknown --validate kind 'harness'"),
        ({}, "no schema to validate against"),
        ({"kind": "harness-audit", "schema_path": "x.json"}, "both given"),
        ({"schema_path": "/nonexistent/schema.json"}, "cannot read schema"),
    ],
)
def test_config_errors_exit_2(kwargs, needle):
    with pytest.raises(ConfigError) as caught:
        build_validator(**kwargs)
    assert needle in caught.value.one_line()
    assert caught.value.exit_code == ExitCode.USAGE


def test_broken_user_schemas_exit_2(tmp_path):
    not_json = tmp_path / "a.json"
    not_json.write_text("{nope")
    bad_type = tmp_path / "b.json"
    bad_type.write_text(json.dumps({"type": "no-such-type"}))
    for path, needle in ((not_json, "is not valid JSON"), (bad_type, "does not compile")):
        with pytest.raises(ConfigError) as caught:
            build_validator(schema_path=str(path))
        assert needle in caught.value.message


def test_schema_lookup_reads_the_package_data():
    """Schemas come from the package (harmony_pipes.schemas, mapped to the top-level schemas/)."""
    assert schema_path("s3-receipt") == schema_path("s3-receipt.schema.json")
    assert Path(str(schema_path("s3-receipt"))) == REPO_ROOT / "schemas" / "s3-receipt.schema.json"
    assert {"alert", "harness-audit-event", "inventory", "s3-receipt"} <= set(schema_names())
    with pytest.raises(ConfigError) as caught:
        schema_path("no-such-thing")
    assert "no-such-thing.schema.json is not in the installed package" in caught.value.message
