#!/usr/bin/env bash
# Long-running EC2 inventory: aws-discovery emits a snapshot, then add/update/remove diffs
# every AWS_DISCOVERY_INTERVAL_SECS (default 60). Restarted with a growing pause when it dies; a
# configuration (2) or credential (3) error stops the loop, since a restart would not help.
#
#   pipelines/shell/aws-discovery-loop.sh >> /var/log/harmony-pipes/inventory.ndjson
#   pipelines/shell/aws-discovery-loop.sh | your-inventory-consumer
#
# Environment:
#   HARMONY_STATE_ROOT       root of the state dir (default /var/lib/harmony-pipes); a restart
#                            emits diffs against the last inventory, not a second snapshot
#   RESTART_MAX_DELAY_SECS   longest pause between restarts (default 300)
#   AWS credentials (boto3 chain) and aws-discovery's own env vars, e.g. AWS_DISCOVERY_REGIONS,
#   AWS_DISCOVERY_TAGS, AWS_DISCOVERY_SITE, AWS_DISCOVERY_INTERVAL_SECS (default 60),
#   AWS_DISCOVERY_DEFAULT_USER / _DEFAULT_KEY (see `aws-discovery --help`).
#
# SIGTERM / SIGINT are passed to aws-discovery, which finishes its cycle, persists its state and
# exits 0; the script then exits 0.
set -uo pipefail

state_root="${HARMONY_STATE_ROOT:-/var/lib/harmony-pipes}"
max_delay_secs="${RESTART_MAX_DELAY_SECS:-300}"
mkdir -p "$state_root"

stopping=0
child=""
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT

delay_secs=1
while [ "$stopping" -eq 0 ]; do
    started=$SECONDS
    aws-discovery --state-dir "$state_root/discovery" &
    child=$!
    while :; do
        wait "$child"; rc=$?
        if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
        break
    done
    child=""
    if [ "$stopping" -eq 1 ]; then exit 0; fi
    case "$rc" in
        2|3)
            echo "aws-discovery-loop: exit $rc is a configuration or credential error; not restarting" >&2
            exit "$rc" ;;
    esac
    if [ $((SECONDS - started)) -gt "$max_delay_secs" ]; then delay_secs=1; fi
    echo "aws-discovery-loop: aws-discovery exited $rc; restarting in ${delay_secs}s" >&2
    sleep "$delay_secs" & wait $! || true
    delay_secs=$((delay_secs * 2 > max_delay_secs ? max_delay_secs : delay_secs * 2))
done
