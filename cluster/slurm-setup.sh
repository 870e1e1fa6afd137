#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, to try cluster/kdsearch.sbatch (the tests use it too).
#
#   sudo apt-get install --no-install-recommends slurmctld slurmd slurm-client munge   # Debian/Ubuntu
#   sudo cluster/slurm-setup.sh          # about 10 s, then: sbatch --nodes=1 ... cluster/kdsearch.sbatch ...
#   sudo cluster/slurm-teardown.sh       # stops exactly what this script started, removes its files
#
# Needs root and no systemd: it starts munged (as the munge user), slurmctld -D and slurmd -D in the
# background, records their pids in the state folder, and waits until the node is idle. The node has every
# CPU of this machine (nproc, whatever OMP_NUM_THREADS says) and a modest RealMemory, one partition "debug". slurm.conf is written into the
# state folder and linked from /etc/slurm/slurm.conf, so plain sbatch/squeue/scontrol find it; a machine
# that already has its own /etc/slurm/slurm.conf is left alone (this script refuses), and so is a cluster of
# this script that still runs. A link left by one that was killed without its teardown is cleared.
#
# Settings (environment variables, all optional):
#   KDSEARCH_SLURM_DIR   state folder: slurm.conf, pids, logs, spool (default /tmp/kdsearch-slurm)
#   KDSEARCH_SLURM_MEM   RealMemory of the node in MB (default 2048)
#   KDSEARCH_SLURM_WAIT_S  how long the node may take to come up (default 60)
set -euo pipefail

STATE="${KDSEARCH_SLURM_DIR:-/tmp/kdsearch-slurm}"
MEM_MB="${KDSEARCH_SLURM_MEM:-2048}"
WAIT_S="${KDSEARCH_SLURM_WAIT_S:-60}"
CONF_LINK=/etc/slurm/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge

CONF_MARK="# Written by kdsearch's cluster/slurm-setup.sh"

log() { echo "slurm-setup: $*"; }
die() { echo "slurm-setup: error: $*" >&2; exit 1; }

# shellcheck disable=SC1091  # slurm-pids.sh is linted on its own
source "$(dirname "$0")/slurm-pids.sh"

[[ "$(id -u)" -eq 0 ]] || die "run it as root (sudo $0): it starts munged, slurmctld and slurmd"
for tool in munged mungekey slurmctld slurmd sbatch sinfo scontrol setpriv; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] ||
        die "$tool not found; install it: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"
done
export PATH="$PATH:/usr/sbin:/sbin"

# Anything of ours still running is stopped first, so the script can be rerun.
if [[ -e "$STATE/pids" ]]; then
    log "a previous cluster's state is in $STATE: tearing it down first"
    KDSEARCH_SLURM_DIR="$STATE" "$(dirname "$0")/slurm-teardown.sh"
fi
# A link left by a cluster of this script that was never torn down (its session was killed) is cleared when
# none of that cluster's daemons still runs; a live one, or a configuration that is not ours, is left alone.
if [[ -e "$CONF_LINK" || -L "$CONF_LINK" ]] && [[ "$(readlink "$CONF_LINK" || true)" != "$STATE/slurm.conf" ]]; then
    left="$(readlink "$CONF_LINK" || true)"
    if [[ -z "$left" ]] || { [[ -e "$left" ]] && ! head -n 1 "$left" | grep -qF "$CONF_MARK"; }; then
        die "$CONF_LINK exists already: this machine has its own SLURM configuration, which this script leaves alone"
    fi
    if any_daemon_running "$(dirname "$left")/pids"; then
        die "another cluster of this script is running from $(dirname "$left"); stop it first:" \
            "sudo KDSEARCH_SLURM_DIR=$(dirname "$left") $(dirname "$0")/slurm-teardown.sh"
    fi
    log "clearing $CONF_LINK -> $left: left by a cluster that was not torn down (none of its daemons runs)"
    rm -f "$CONF_LINK"
fi

mkdir -p "$STATE/state" "$STATE/spool"
chmod 0755 "$STATE"
: > "$STATE/pids"

# --- munge: a key, its run folder, and munged as the munge user (unless a munged already answers) --------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [[ ! -s "$MUNGE_KEY" ]]; then
        mungekey --create --keyfile="$MUNGE_KEY" >/dev/null
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    mkdir -p "$MUNGE_RUN"
    chown munge:munge "$MUNGE_RUN"
    chmod 0755 "$MUNGE_RUN"
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        --log-file="$STATE/munged.log" </dev/null >/dev/null 2>&1 &
    echo "munged $!" >> "$STATE/pids"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged did not start; see $STATE/munged.log"
fi

# --- slurm.conf for this one node ---------------------------------------------------------------------------
HOST="$(hostname -s)"
# Every CPU this process may run on: plain nproc prints OMP_NUM_THREADS instead when that is set (a shell
# tuned for one-thread training would describe a one-CPU node, and jobs asking for more would never start).
CPUS="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
cat > "$STATE/slurm.conf" <<EOF
$CONF_MARK: a single-node SLURM for trying cluster/kdsearch.sbatch.
ClusterName=kdsearch-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire + 1 s before it may run again (default 120 s), and then for the
# scheduler's main loop (default 60 s): these bring a requeue back to running in about 12 s.
AuthInfo=cred_expire=10
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
JobRequeue=1
ReturnToService=2
KillWait=10
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$(dirname "$CONF_LINK")"
ln -sfn "$STATE/slurm.conf" "$CONF_LINK"
echo "link $CONF_LINK" >> "$STATE/pids"

# --- the daemons, in the foreground of their own background processes: $! is the daemon itself ------------
slurmctld -D -i -f "$STATE/slurm.conf" </dev/null >"$STATE/slurmctld.out" 2>&1 &
echo "slurmctld $!" >> "$STATE/pids"
slurmd -D -f "$STATE/slurm.conf" </dev/null >"$STATE/slurmd.out" 2>&1 &
echo "slurmd $!" >> "$STATE/pids"

deadline=$((SECONDS + WAIT_S))
until [[ "$(sinfo -h -n "$HOST" -o %T 2>/dev/null)" == idle ]]; do
    if (( SECONDS >= deadline )); then
        die "the node did not become idle within ${WAIT_S}s; see $STATE/slurmctld.log and $STATE/slurmd.log"
    fi
    while read -r name pid; do
        if [[ "$name" == slurm* ]] && ! daemon_running "$name" "$pid"; then
            die "$name exited; see $STATE/$name.log and $STATE/$name.out"
        fi
    done < "$STATE/pids"
    sleep 0.5
done
log "node $HOST is idle ($CPUS CPUs, ${MEM_MB} MB); state in $STATE; stop it with $(dirname "$0")/slurm-teardown.sh"
