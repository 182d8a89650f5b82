#!/usr/bin/env bash
# Install the Debian packages of a single-node SLURM (controller, node daemon, client
# commands, MUNGE authentication) for the SLURM end-to-end test.
#
# Idempotent: when every command is already on PATH it returns at once without touching
# apt. Needs root and apt-get; otherwise it says so and exits 1 (the test then skips, or
# fails when SMI_REQUIRE_SLURM=1).
#
# Usage: tests/slurm/install.sh
set -euo pipefail

# The commands the test harness calls; one missing command means "install".
readonly COMMANDS=(munged munge unmunge slurmctld slurmd sbatch squeue sinfo scontrol scancel)
# --no-install-recommends keeps the install to the daemons and clients (about 15 s).
readonly PACKAGES=(slurmctld slurmd slurm-client munge)

missing=()
for cmd in "${COMMANDS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install.sh: SLURM and MUNGE already installed"
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "install.sh: missing ${missing[*]}; installing them needs root" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: missing ${missing[*]} and no apt-get to install ${PACKAGES[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh image may have no package lists at all; refresh them only when the install
# cannot be resolved from what is there.
if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
echo "install.sh: installed ${PACKAGES[*]}"
