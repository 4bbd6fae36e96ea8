#!/usr/bin/env bash
# Long-running collection: harmony-events polls every HARMONY_INTERVAL_SECS (default 60),
# harmony-alerts filters and dedupes, s3-batch seals an object every --max-age-secs / size.
# The chain is restarted with a growing pause when it dies; a config or auth error stops it.
#
#   HARMONY_DEST=s3://my-bucket/harmony/ pipelines/shell/harmony-to-s3-loop.sh
#
# Environment: as harmony-to-s3-once.sh, plus
#   RESTART_MAX_DELAY_SECS  longest pause between restarts (default 300)
#
# Shutdown (SIGTERM / SIGINT, e.g. systemd stop with KillMode=mixed, docker stop): only
# harmony-events is told to stop. It finishes its page, persists its cursor and exits; the others
# then see end of input, so harmony-alerts flushes and s3-batch seals and uploads the open batch.
# Nothing is left in a pipe. (Signalling all three at once could lose the lines in flight.)
set -uo pipefail

: "${HARMONY_DEST:?set HARMONY_DEST to s3://bucket/prefix/ or file:///dir/}"
state_root="${HARMONY_STATE_ROOT:-/var/lib/harmony-pipes}"
max_delay_secs="${RESTART_MAX_DELAY_SECS:-300}"
mkdir -p "$state_root"
work_dir="$(mktemp -d)"
fifo="$work_dir/events.fifo"
mkfifo "$fifo"

stopping=0
events_pid=""
trap 'stopping=1; [ -n "$events_pid" ] && kill -TERM "$events_pid" 2>/dev/null' TERM INT
trap 'rm -rf "$work_dir"' EXIT

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
    harmony-events --state-dir "$state_root/events" >"$fifo" &
    events_pid=$!
    harmony-alerts --state-dir "$state_root/alerts" <"$fifo" \
        | s3-batch --dest "$HARMONY_DEST" --state-dir "$state_root/s3-batch" &
    sink_pid=$!

    wait_for "$events_pid"; events_rc=$?
    wait_for "$sink_pid"; sink_rc=$?    # status of `harmony-alerts | s3-batch` (pipefail)
    events_pid=""

    if [ "$stopping" -eq 1 ]; then
        echo "harmony-to-s3-loop: stopped (harmony-events exit $events_rc, sink exit $sink_rc)" >&2
        exit 0
    fi
    rc=$events_rc
    [ "$rc" -eq 0 ] && rc=$sink_rc
    case "$rc" in
        2|3)
            echo "harmony-to-s3-loop: exit $rc is a configuration or credential error; not restarting" >&2
            exit "$rc" ;;
    esac
    # A run that lasted a while was healthy: restart quickly; crash loops back off.
    if [ $((SECONDS - started)) -gt "$max_delay_secs" ]; then delay_secs=1; fi
    echo "harmony-to-s3-loop: chain ended (harmony-events $events_rc, sink $sink_rc); restarting in ${delay_secs}s" >&2
    sleep "$delay_secs" & wait $! || true
    delay_secs=$((delay_secs * 2 > max_delay_secs ? max_delay_secs : delay_secs * 2))
done
