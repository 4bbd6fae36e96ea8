"""`aws-discovery test`: each step of a sync checked on its own, with the cause and fix on failure.

Steps: base credentials (GetCallerIdentity), the assumed role (AssumeRole with ExternalId),
DescribeRegions, and one small DescribeInstances per selected region. The exit code is the first
failure's (DESIGN section 3.5): 3 refused, 4 unreachable, 2 configuration, 75 throttled.
"""

from __future__ import annotations

from typing import Any

import click

from harmony_pipes._core.aws import CREDENTIALS_FIX, classify_aws_error, make_session
from harmony_pipes._core.errors import AuthError, ExitCode, PipesError

from .ec2 import ec2_client


def _ok(step: str, detail: str) -> None:
    click.echo(f"ok    {step}: {detail}")


def _fail(step: str, error: PipesError) -> None:
    click.echo(f"FAIL  {step}: {error.one_line().removeprefix('Error: ')}")


def _identity(session: Any, params: dict[str, Any], region: str) -> dict[str, Any]:
    sts = ec2_client(
        session,
        region,
        service="sts",
        endpoint_url=params.get("endpoint_url"),
        retry_mode=params.get("retry_mode") or "adaptive",
        total_attempts=params.get("max_attempts") or 3,
        read_timeout_secs=params.get("read_timeout_secs") or 60,
    )
    return sts.get_caller_identity()


def run_checks(aws: Any) -> int:
    """Run every check, print one line each, return the exit code of the first failure (or 0)."""
    params = aws.params
    first_failure: int = ExitCode.OK

    def failed(step: str, error: PipesError) -> None:
        nonlocal first_failure
        _fail(step, error)
        if first_failure == ExitCode.OK:
            first_failure = int(error.exit_code)

    region = aws.home_region_hint()
    try:
        base = make_session(profile=params.get("profile"), region=region)
        if base.get_credentials() is None:
            raise AuthError("no AWS credentials found", CREDENTIALS_FIX)
        who = _identity(base, params, region or base.region_name or "us-east-1")
        _ok("credentials", f"{who.get('Arn')} (account {who.get('Account')})")
    except Exception as exc:
        failed("credentials", classify_aws_error(exc, what="GetCallerIdentity", service="sts"))
        return first_failure

    if params.get("role_arn"):
        try:
            who = _identity(aws.session, params, region or base.region_name or "us-east-1")
            extra = " with ExternalId" if params.get("external_id") else " (no ExternalId given)"
            _ok("assume-role", f"{who.get('Arn')} (account {who.get('Account')}){extra}")
        except Exception as exc:
            failed("assume-role", classify_aws_error(exc, what=f"AssumeRole {params['role_arn']}", service="sts"))
            return first_failure

    try:
        regions = aws.regions()
        home = aws.home_region()
        count = len(aws.reader.list_regions(home))
        _ok("describe-regions", f"{count} regions enabled; reading {', '.join(regions)}")
    except Exception as exc:
        failed("describe-regions", classify_aws_error(exc, what="DescribeRegions", service="ec2"))
        return first_failure

    for name in regions:
        try:
            page = aws.reader.client(name).describe_instances(MaxResults=5)
            found = sum(len(r.get("Instances", [])) for r in page.get("Reservations", []))
            _ok(f"describe-instances {name}", f"answered ({found} instances on the first page)")
        except Exception as exc:
            failed(
                f"describe-instances {name}",
                classify_aws_error(exc, what=f"DescribeInstances in {name}", service="ec2"),
            )
    return first_failure
