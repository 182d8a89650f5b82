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

# running PID: the process exists and is not a zombie (an orphaned daemon is reaped by
# PID 1, which in a container may never do it).
running() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n $state && $state != Z ]]
}

# stop NAME...: TERM each recorded PID that still runs the expected program, wait for all
# of them together (slurmd takes seconds to shut down), KILL what is left after
# STOP_TIMEOUT_S. The command-name check guards against a recycled PID.
stop() {
    local name pidfile pid comm deadline pids=()
    for name in "$@"; do
        pidfile="$STATE/pids/$name.pid"
        [[ -f $pidfile ]] || continue
        pid="$(cat "$pidfile")"
        comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
        if [[ $comm == "$name" || $comm == setpriv || $comm == setsid ]]; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        fi
        rm -f "$pidfile"
    done
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    for pid in "${pids[@]}"; do
        while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        running "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    return 0
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
stop slurmd slurmctld
# MUNGE last: the SLURM daemons authenticate their goodbyes with it.
stop munged
if [[ -f $CONF ]] && [[ "$(head -n 1 "$CONF")" == "$MARKER"* ]]; then
    rm -f "$CONF"
fi
echo "stop.sh: stopped"
