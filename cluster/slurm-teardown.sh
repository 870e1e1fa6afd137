#!/usr/bin/env bash
# Stop the single-node SLURM that cluster/slurm-setup.sh started: exactly the processes it recorded (their
# pids, checked by name), its /etc/slurm/slurm.conf link, and its state folder.
#
#   sudo cluster/slurm-teardown.sh
#
# KDSEARCH_SLURM_DIR: the state folder given to slurm-setup.sh (default /tmp/kdsearch-slurm).
# Jobs still running are cancelled first, so that their processes (Ray, search.py) end with them.
set -euo pipefail

STATE="${KDSEARCH_SLURM_DIR:-/tmp/kdsearch-slurm}"
PIDS="$STATE/pids"
export PATH="$PATH:/usr/sbin:/sbin"
# shellcheck disable=SC1091  # slurm-pids.sh is linted on its own
source "$(dirname "$0")/slurm-pids.sh"

if [[ ! -e "$PIDS" ]]; then
    echo "slurm-teardown: nothing to stop ($PIDS does not exist)"
    exit 0
fi

# Cancel every job, and give their batch scripts a moment to stop Ray and the search.
mapfile -t jobs < <(squeue -h -o %A 2>/dev/null || true)
if (( ${#jobs[@]} > 0 )); then
    scancel "${jobs[@]}" 2>/dev/null || true
    for _ in $(seq 60); do
        [[ -z "$(squeue -h 2>/dev/null)" ]] && break
        sleep 0.5
    done
fi

# The daemons, slurmd first (then slurmctld, then munged): each one only when its pid is still that daemon.
stop() {
    local name=$1 pid=$2
    if ! daemon_running "$name" "$pid"; then
        return 0   # gone already, or the pid now belongs to someone else
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

for name in slurmd slurmctld munged; do
    while read -r kind value; do
        if [[ "$kind" == "$name" ]]; then
            stop "$name" "$value"
        fi
    done < "$PIDS"
done
while read -r kind value; do
    if [[ "$kind" == link && "$(readlink "$value" || true)" == "$STATE/slurm.conf" ]]; then
        rm -f "$value"
    fi
done < "$PIDS"

rm -rf "$STATE"
echo "slurm-teardown: stopped"
