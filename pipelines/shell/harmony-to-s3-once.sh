#!/usr/bin/env bash
# One collection run: Harmony events since the last run -> alerts -> S3 objects, then exit.
# Cron-able: run it every few minutes; each run resumes from the cursor in its state dir.
#
#   */5 * * * *  HARMONY_DEST=s3://my-bucket/harmony/ /opt/harmony-pipes/pipelines/shell/harmony-to-s3-once.sh
#
# Environment:
#   HARMONY_CLIENT_ID, HARMONY_ACCESS_KEY (or HARMONY_ACCESS_KEY_FILE)  read by harmony-events
#   HARMONY_DEST        where s3-batch writes: s3://bucket/prefix/ or file:///dir/ (required)
#   HARMONY_STATE_ROOT  root of the three state dirs (default /var/lib/harmony-pipes)
#   Every other option of the three commands can be set through its own env var (see --help),
#   e.g. HARMONY_START=24h for the first run, AWS_REGION / AWS_PROFILE for S3.
#
# Exit status: the worst stage's (DESIGN exit codes: 2 config, 3 auth refused, 4 unreachable,
# 75 try again later; 2 > 3 > 4 > 1 > 65 > 75 > 0). A failed run loses nothing: the cursor only
# moves past events s3-batch committed, and s3-batch retries its spooled objects, with the same
# keys and bytes, on the next run.
set -euo pipefail

: "${HARMONY_DEST:?set HARMONY_DEST to s3://bucket/prefix/ or file:///dir/}"
state_root="${HARMONY_STATE_ROOT:-/var/lib/harmony-pipes}"
mkdir -p "$state_root"

# Cron may start a run while the previous one still works: skip instead of queueing (each
# command also locks its state dir, so an overlap could never corrupt state; this avoids noise).
exec 9>"$state_root/.harmony-to-s3-once.lock"
if ! flock -n 9; then
    echo "harmony-to-s3-once: previous run still active, skipping this one" >&2
    exit 0
fi

# One process runs the three stages (records handed over in memory) and orders their checkpoints:
# s3-batch commits, then harmony-alerts saves its keys, then harmony-events its cursor. A kill -9
# at any moment, then the next run: every alert stored exactly once (docs/design.md).
harmony-pipes chain "harmony-events --once --state-dir '$state_root/events' \
    | harmony-alerts --state-dir '$state_root/alerts' \
    | s3-batch --dest '$HARMONY_DEST' --state-dir '$state_root/s3-batch'"
