#!/usr/bin/env bash
# Start a throwaway single-node SLURM on this machine: munged, slurmctld and slurmd, all
# on loopback, with their state, logs and PID files under STATE_DIR.
#
# There is no systemd here, so the daemons are started directly in the background and
# their PIDs are kept in STATE_DIR/pids/ for tests/slurm/stop.sh. slurm.conf has to be at
# /etc/slurm/slurm.conf (the executor plugin's job step drops SLURM_CONF); a
# slurm.conf that this script did not write is never overwritten.
#
# Usage: tests/slurm/start.sh STATE_DIR [PARTITION...]
# PARTITION names default to "debug"; the first is the default partition. Environment:
# SMI_SLURM_TEST_MEMORY_MB, the memory the node advertises (default: at least 256 GiB).
# Exit status: 0 when the node is idle and takes jobs; 77 when this machine cannot host
# the test cluster (not root, packages missing, a real SLURM present), with the reason on
# stderr; 1 on any other failure (daemon logs are printed). Run stop.sh in every case.
set -euo pipefail

readonly HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly CONF=/etc/slurm/slurm.conf
# First line of the generated slurm.conf; stop.sh removes only a file that starts so.
readonly MARKER="# smi-bench throwaway test cluster"
readonly CTLD_PORT=6817
readonly SLURMD_PORT=6818
readonly READY_TIMEOUT_S=30
# Memory the test node advertises, in MB (see slurm.conf.in): a cluster node's worth.
readonly ADVERTISED_MEMORY_MB="${SMI_SLURM_TEST_MEMORY_MB:-262144}"

cannot() { echo "start.sh: $*" >&2; exit 77; }
fail() {
    echo "start.sh: $*" >&2
    for log in "$STATE"/*.log "$STATE"/*.out; do
        [[ -f $log ]] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
    done
    exit 1
}
# wait_for SECONDS COMMAND...: retry COMMAND every 0.5 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
munge_works() { { munge -n </dev/null | unmunge; } >/dev/null 2>&1; }
node_idle() { [[ "$(sinfo -h -N -o %T 2>/dev/null | sort -u)" == idle ]]; }
# start NAME COMMAND...: run COMMAND in the background, record its PID.
start() {
    local name=$1; shift
    setsid "$@" >>"$STATE/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE/pids/$name.pid"
}

[[ $# -ge 1 ]] || { echo "usage: $0 STATE_DIR [PARTITION...]" >&2; exit 2; }
mkdir -p "$1"
STATE="$(cd "$1" && pwd)"
readonly STATE
shift
PARTITIONS=("${@:-debug}")

[[ $EUID -eq 0 ]] || cannot "needs root to run slurmctld/slurmd and write $CONF (running as uid $EUID)"
for cmd in munged munge unmunge slurmctld slurmd sbatch squeue sinfo scontrol scancel setpriv; do
    command -v "$cmd" >/dev/null 2>&1 || cannot "'$cmd' not found; run tests/slurm/install.sh"
done
if [[ -e $CONF ]] && [[ "$(head -n 1 "$CONF")" != "$MARKER"* ]]; then
    cannot "$CONF exists and was not written by this harness; refusing to replace a real SLURM setup"
fi
for port in $CTLD_PORT $SLURMD_PORT; do
    port_in_use "$port" && cannot "port $port is in use (is another SLURM running?)"
done

mkdir -p "$STATE"/{pids,ctld,spool}

# MUNGE: reuse a working daemon, else start one as the munge user (it refuses root).
if ! munge_works; then
    install -d -o munge -g munge -m 0755 /run/munge
    start munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground --force
    wait_for 10 munge_works || fail "munged did not come up"
fi

host="$(hostname -s)"
# `slurmd -C` prints this machine's CPUs, sockets, cores and memory as a NodeName line.
hardware="$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')"
real_memory="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")"
memory=$((real_memory > ADVERTISED_MEMORY_MB ? real_memory : ADVERTISED_MEMORY_MB))
hardware="$(sed 's/ *RealMemory=[0-9]*//' <<<"$hardware")"
partitions=""
default=YES
for name in "${PARTITIONS[@]}"; do
    partitions+="PartitionName=$name Nodes=ALL Default=$default MaxTime=INFINITE State=UP"$'\n'
    default=NO
done
mkdir -p "$(dirname "$CONF")"
sed -e "s|@HOST@|$host|g" -e "s|@STATE@|$STATE|g" -e "s|@HARDWARE@|$hardware|" \
    -e "s|@MEMORY_MB@|$memory|g" -e "s|@CTLD_PORT@|$CTLD_PORT|" \
    -e "s|@SLURMD_PORT@|$SLURMD_PORT|" -e "/@PARTITIONS@/{r /dev/stdin" -e "d}" \
    "$HERE/slurm.conf.in" <<<"$partitions" >"$CONF.tmp"
mv "$CONF.tmp" "$CONF"

# -D: stay in the foreground (so $! is the daemon); -c: cold start, no saved state.
start slurmctld slurmctld -D -c
wait_for $READY_TIMEOUT_S scontrol ping || fail "slurmctld did not answer scontrol ping"
start slurmd slurmd -D -N "$host"
wait_for $READY_TIMEOUT_S node_idle || fail "node $host did not become idle"
echo "start.sh: SLURM up (node $host, partitions ${PARTITIONS[*]}, state $STATE)"
