#!/usr/bin/env bash
# Long-running collection: harmony-events polls every HARMONY_INTERVAL_SECS (default 60),
# harmony-alerts filters and dedupes, s3-batch seals an object every --max-age-secs / size —
# the three as one `harmony-pipes chain` (checkpoints ordered: nothing lost or stored twice,
# whatever ends it). The chain is restarted with a growing pause when it dies; a config or auth
# error stops it.
#
#   HARMONY_DEST=s3://my-bucket/harmony/ pipelines/shell/harmony-to-s3-loop.sh
#
# Environment: as harmony-to-s3-once.sh, plus
#   RESTART_MAX_DELAY_SECS  longest pause between restarts (default 300)
#
# Shutdown (SIGTERM / SIGINT / SIGHUP, e.g. systemctl stop, docker stop): passed to the chain,
# whose source stops at its next safe point; everything read is committed, exit 0.
set -uo pipefail

: "${HARMONY_DEST:?set HARMONY_DEST to s3://bucket/prefix/ or file:///dir/}"
state_root="${HARMONY_STATE_ROOT:-/var/lib/harmony-pipes}"
max_delay_secs="${RESTART_MAX_DELAY_SECS:-300}"
mkdir -p "$state_root"

stopping=0
chain_pid=""
trap 'stopping=1; [ -n "$chain_pid" ] && kill -TERM "$chain_pid" 2>/dev/null' TERM INT HUP

# `wait` returns early (status > 128) when a trapped signal arrives: wait again while alive.
wait_for() {
    local pid=$1 rc
    while :; do
        wait "$pid"; rc=$?
        if [ "$rc" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then continue; fi
        return "$rc"
    done
}

delay_secs=1
while [ "$stopping" -eq 0 ]; do
    started=$SECONDS
    harmony-pipes chain "harmony-events --state-dir '$state_root/events' \
        | harmony-alerts --state-dir '$state_root/alerts' \
        | s3-batch --dest '$HARMONY_DEST' --state-dir '$state_root/s3-batch'" &
    chain_pid=$!
    wait_for "$chain_pid"; rc=$?
    chain_pid=""

    if [ "$stopping" -eq 1 ]; then
        echo "harmony-to-s3-loop: stopped (chain exit $rc)" >&2
        exit 0
    fi
    case "$rc" in
        2|3)
            echo "harmony-to-s3-loop: exit $rc is a configuration or credential error; not restarting" >&2
            exit "$rc" ;;
    esac
    # A run that lasted a while was healthy: restart quickly; crash loops back off.
    if [ $((SECONDS - started)) -gt "$max_delay_secs" ]; then delay_secs=1; fi
    echo "harmony-to-s3-loop: chain ended (exit $rc); restarting in ${delay_secs}s" >&2
    sleep "$delay_secs" & wait $! || true
    delay_secs=$((delay_secs * 2 > max_delay_secs ? max_delay_secs : delay_secs * 2))
done
