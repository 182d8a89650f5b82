#!/usr/bin/env bash
# Stop what tests/slurm/start.sh started, by the PIDs it recorded: cancel the test
# cluster's jobs, stop slurmd, slurmctld and (if it was started here) munged, then remove
# the generated /etc/slurm/slurm.conf. Safe to run twice or after a failed start.
#
# Usage: tests/slurm/stop.sh STATE_DIR
set -uo pipefail

readonly CONF=/etc/slurm/slurm.conf
readonly MARKER="# smi-bench throwaway test cluster"
readonly STOP_TIMEOUT_S=15

[[ $# -eq 1 ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
readonly STATE="$1"

# stop NAME: TERM the recorded PID if it still runs the expected program, then KILL it
# after STOP_TIMEOUT_S. The command-name check guards against a recycled PID.
stop() {
    local name=$1 pidfile="$STATE/pids/$1.pid" pid comm deadline
    [[ -f $pidfile ]] || return 0
    pid="$(cat "$pidfile")"
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    if [[ $comm == "$name" || $comm == setpriv ]]; then
        kill -TERM "$pid" 2>/dev/null
        deadline=$((SECONDS + STOP_TIMEOUT_S))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

if [[ -f $STATE/pids/slurmctld.pid ]] && scontrol ping >/dev/null 2>&1; then
    # Jobs run under slurmstepd, which outlives slurmd: cancel them and wait, so that no
    # job process is left behind.
    scancel --cluster=smitest --user="$(id -un)" 2>/dev/null
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    while [[ -n "$(squeue -h -t running,completing -o %i 2>/dev/null)" ]] && ((SECONDS < deadline)); do
        sleep 0.5
    done
fi
stop slurmd
stop slurmctld
stop munged
if [[ -f $CONF ]] && [[ "$(head -n 1 "$CONF")" == "$MARKER"* ]]; then
    rm -f "$CONF"
fi
echo "stop.sh: stopped"
