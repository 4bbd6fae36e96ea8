"""Micro benchmarks of aws-discovery's pure core: classify and diff over 10,000 instances.

The whole-process case (benchmarks/cases/discovery.py) is dominated by moto's response
serialization; these show what our own per-cycle CPU cost is.
"""

from __future__ import annotations

import copy

from harmony_pipes.aws_discovery.classify import Selection, TagSelector, classify
from harmony_pipes.aws_discovery.diff import diff

N = 10_000
SEL = Selection(
    tags=(TagSelector("env", "prod"), TagSelector("team")),
    site="hq",
    default_user="ec2-user",
    default_key="generic",
)


def _instances() -> list[dict]:
    out = []
    for i in range(N):
        tags = [{"Key": "Name", "Value": f"web-{i}"}, {"Key": "env", "Value": "prod" if i % 10 else "dev"}]
        if i % 3 == 0:
            tags.append({"Key": "checkpoint_ssh:ubuntu", "Value": "deploy.pem"})
        inst = {
            "InstanceId": f"i-{i:017x}",
            "VpcId": "vpc-1",
            "PrivateIpAddress": f"10.0.{i // 256}.{i % 256}",
            "PublicIpAddress": None,
            "State": {"Code": 16, "Name": "running"},
            "Tags": tags,
        }
        if i % 7 == 0:
            inst["Platform"] = "windows"
        out.append(inst)
    return out


INSTANCES = _instances()


def _inventory() -> dict:
    entries = (classify(inst, "us-east-1", SEL) for inst in INSTANCES)
    return {e["instance_id"]: e for e in entries if e is not None}


def test_bench_classify_10k(benchmark) -> None:
    result = benchmark(lambda: [classify(inst, "us-east-1", SEL) for inst in INSTANCES])
    assert sum(1 for r in result if r is not None) == N - N // 10


def test_bench_diff_no_change_10k(benchmark) -> None:
    previous = _inventory()
    current = copy.deepcopy(previous)
    records, _ = benchmark(lambda: diff(previous, current, observed_at="2026-01-01T00:00:00.000Z"))
    assert records == []


def test_bench_diff_one_percent_changed_10k(benchmark) -> None:
    previous = _inventory()
    current = copy.deepcopy(previous)
    for n, key in enumerate(list(current)):
        if n % 100 == 0:
            current[key]["public_ip"] = "54.0.0.1"
    records, _ = benchmark(lambda: diff(previous, current, observed_at="2026-01-01T00:00:00.000Z"))
    assert len(records) == len(previous) // 100 + (1 if len(previous) % 100 else 0)
