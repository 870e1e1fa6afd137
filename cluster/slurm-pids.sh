# Sourced by cluster/slurm-setup.sh and cluster/slurm-teardown.sh: the one rule for "that daemon still runs".
#
# The setup records each daemon it starts as a line "<name> <pid>" in <state folder>/pids (and its
# /etc/slurm/slurm.conf link as "link <path>"). A pid counts as that daemon only while /proc says its
# command is that name: pids are reused once a process is gone.

# Whether process PID is still the daemon NAME.
daemon_running() {
    [[ "$(cat "/proc/$2/comm" 2>/dev/null || true)" == "$1" ]]
}

# Whether any daemon recorded in the pids file $1 still runs.
any_daemon_running() {
    local name pid
    [[ -e "$1" ]] || return 1
    while read -r name pid; do
        [[ "$name" != link ]] && daemon_running "$name" "$pid" && return 0
    done < "$1"
    return 1
}
