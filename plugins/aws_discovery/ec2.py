"""EC2 reads: regions, VPCs and instances, one paginator per region, regions in parallel.

EC2 throttles per account *per region*, so regions are independent token buckets and are read
concurrently by a small thread pool. Clients use botocore's `adaptive` retry mode (client-side
rate limiting on top of standard retries) and are cached across cycles. A region that fails is
returned as a failure (never raised), so the caller can carry its instances forward.

Filters pushed to the server: `instance-state-name`, `vpc-id` (values ORed) and either
`tag:<key>` (a single selected key with values) or `tag-key` with the selected keys (ORed, so
one call per region still gives OR semantics across different tag keys, which one set of AWS tag
filters cannot); the exact `KEY=VALUE` match is always re-checked client-side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harmony_pipes._core.aws import RETRY_MODES, classify_aws_error
from harmony_pipes._core.errors import ConfigError, PipesError

INSTANCE_STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")
PAGE_SIZE = 1000  # DescribeInstances MaxResults upper bound
MAX_REGION_WORKERS = 8
ID_FILTER_CHUNK = 200  # values per filter
Keep = Callable[[str, dict[str, Any]], Any]


def ec2_client(
    session: Any,
    region: str,
    *,
    service: str = "ec2",
    endpoint_url: str | None,
    retry_mode: str,
    total_attempts: int,
    read_timeout_secs: float,
    connect_timeout_secs: float = 5,
) -> Any:
    """An EC2 (or `service`) client making at most `total_attempts` attempts per call, the first
    one included.

    botocore's `retries["max_attempts"]` counts *retries* (N gives N+1 attempts); the option
    says attempts, so this sets `total_max_attempts` (the AWS_MAX_ATTEMPTS meaning).
    """
    from botocore.config import Config

    if retry_mode not in RETRY_MODES:
        raise ConfigError(f"unknown retry mode {retry_mode!r}", f"use one of {', '.join(RETRY_MODES)}")
    config = Config(
        retries={"mode": retry_mode, "total_max_attempts": max(1, int(total_attempts))},
        connect_timeout=connect_timeout_secs,
        read_timeout=read_timeout_secs,
        max_pool_connections=10,
    )
    kwargs: dict[str, Any] = {"config": config, "region_name": region}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return session.client(service, **kwargs)


@dataclass
class RegionResult:
    region: str
    instances: list[dict[str, Any]] = field(default_factory=list)
    error: PipesError | None = None
    pages: int = 0


@dataclass
class Ec2Reader:
    """Cached per-region clients over one (possibly assumed-role) session."""

    session: Any
    endpoint_url: str | None = None
    retry_mode: str = "adaptive"
    max_attempts: int = 5
    read_timeout_secs: float = 60
    page_size: int = PAGE_SIZE
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, region: str) -> Any:
        with self._lock:  # client creation is not thread-safe; the clients themselves are
            if region not in self._clients:
                self._clients[region] = ec2_client(
                    self.session,
                    region,
                    endpoint_url=self.endpoint_url,
                    retry_mode=self.retry_mode,
                    total_attempts=self.max_attempts,
                    read_timeout_secs=self.read_timeout_secs,
                )
            return self._clients[region]

    def list_regions(self, region: str) -> list[dict[str, Any]]:
        """DescribeRegions (enabled regions only) through `region`'s endpoint."""
        try:
            answer = self.client(region).describe_regions()
        except Exception as exc:
            raise classify_aws_error(exc, what=f"DescribeRegions via {region}", service="ec2") from None
        return sorted(answer.get("Regions", []), key=lambda r: r["RegionName"])

    def list_vpcs(self, region: str, vpc_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if vpc_ids:
            kwargs["Filters"] = [{"Name": "vpc-id", "Values": list(vpc_ids)}]
        vpcs: list[dict[str, Any]] = []
        try:
            for page in self.client(region).get_paginator("describe_vpcs").paginate(**kwargs):
                vpcs.extend(page.get("Vpcs", []))
        except Exception as exc:
            raise classify_aws_error(exc, what=f"DescribeVpcs in {region}", service="ec2") from None
        return sorted(vpcs, key=lambda v: v["VpcId"])

    def iter_instances(
        self, region: str, filters: list[dict[str, Any]], counter: list[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        paginator = self.client(region).get_paginator("describe_instances")
        pages = paginator.paginate(Filters=filters, PaginationConfig={"PageSize": self.page_size})
        for page in pages:
            if counter is not None:
                counter[0] += 1
            for reservation in page.get("Reservations", []):
                yield from reservation.get("Instances", [])

    def describe_region(self, region: str, filters: list[dict[str, Any]], keep: Keep | None = None) -> RegionResult:
        """All pages of one region. `keep(region, instance)` turns each instance into what is
        kept (None drops it) while the pages stream by, so a cycle never holds every raw
        DescribeInstances answer at once (10,000 raw instances are ~150 MB of dicts)."""
        result = RegionResult(region)
        counter = [0]
        try:
            for instance in self.iter_instances(region, filters, counter):
                item = instance if keep is None else keep(region, instance)
                if item is not None:
                    result.instances.append(item)
        except Exception as exc:
            result.error = classify_aws_error(exc, what=f"DescribeInstances in {region}", service="ec2")
            result.instances = []
        result.pages = counter[0]
        return result

    def describe_regions(
        self,
        regions: Sequence[str],
        filters: list[dict[str, Any]],
        *,
        keep: Keep | None = None,
        max_workers: int = MAX_REGION_WORKERS,
    ) -> list[RegionResult]:
        """One paginated DescribeInstances per region, concurrently; results in region order."""
        for region in regions:
            self.client(region)
        if len(regions) <= 1:
            return [self.describe_region(r, filters, keep) for r in regions]
        workers = max(1, min(max_workers, len(regions)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ec2") as pool:
            return list(pool.map(lambda r: self.describe_region(r, filters, keep), regions))

    def lookup_ids(self, region: str, instance_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Instances by id without the cycle's filters (why did they vanish?); best effort.

        Uses the `instance-id` filter, not `InstanceIds`, so an id AWS forgot is simply absent
        instead of failing the call with InvalidInstanceID.NotFound.
        """
        found: dict[str, dict[str, Any]] = {}
        try:
            for start in range(0, len(instance_ids), ID_FILTER_CHUNK):
                chunk = list(instance_ids[start : start + ID_FILTER_CHUNK])
                for instance in self.iter_instances(region, [{"Name": "instance-id", "Values": chunk}]):
                    found[instance["InstanceId"]] = instance
        except Exception:
            return found
        return found


def build_filters(
    *, states: Sequence[str], vpcs: Sequence[str], tags: Sequence[tuple[str, str | None]] = ()
) -> list[dict[str, Any]]:
    """Server-side filters for one DescribeInstances per region.

    `tags` are the selectors as (key, value or None). One key with values only -> `tag:<key>`
    with those values (exact, least data); otherwise `tag-key` with every selected key (ORed),
    and the exact values are checked client-side.
    """
    filters: list[dict[str, Any]] = []
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    if vpcs:
        filters.append({"Name": "vpc-id", "Values": list(vpcs)})
    keys = sorted({key for key, _ in tags})
    if len(keys) == 1 and all(value for _, value in tags):  # empty values: let the client check
        values = sorted({str(value) for _, value in tags})
        filters.append({"Name": f"tag:{keys[0]}", "Values": values})
    elif keys:
        filters.append({"Name": "tag-key", "Values": keys})
    return filters


def gone_reason(
    instance: dict[str, Any] | None,
    *,
    states: Sequence[str],
    vpcs: Sequence[str],
    is_selected: Callable[[dict[str, Any]], bool],
) -> str:
    """Why an instance we knew is no longer part of the inventory, from a fresh lookup."""
    if instance is None:
        return "instance no longer exists"
    state = (instance.get("State") or {}).get("Name")
    if states and state not in states:
        return f"instance is {state}"
    if vpcs and instance.get("VpcId") not in vpcs:
        return f"instance is no longer in a selected VPC ({instance.get('VpcId')})"
    if not is_selected(instance):
        return "instance no longer holds a selected tag"
    return "instance no longer matches the selection"
