#!/usr/bin/env bash
# `ray start` for a kdsearch cluster, always with Ray's token authentication:
#
#   cluster/ray-start.sh --head --port=6379                  # on the head node
#   cluster/ray-start.sh --address=HEAD:6379                 # on every other node
#   .venv/bin/python search.py --address HEAD:6379 ...       # anywhere with the same token
#
# A Ray cluster without token authentication runs code for anyone who can reach its ports, and Ray 2.60
# turns tokens on for `ray start --head` only when a token already exists. This script always runs Ray
# with RAY_AUTH_MODE=token. On a head with no token it makes one (`ray get-auth-token --generate`, in
# ~/.ray/auth_token, mode 0600) and says where it is; every other node and every machine that runs
# search.py needs a copy (a shared home has it; or RAY_AUTH_TOKEN_PATH pointing at a copy). A worker
# whose token the head refuses stops with one line saying what to copy where. The token file is kept at
# mode 0600, and the dashboard listens on 127.0.0.1 unless you pass --dashboard-host.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
ray="${KDSEARCH_VENV:-$here/../.venv}/bin/ray"
if [[ ! -x "$ray" ]]; then
    ray="$(command -v ray || true)"
fi
if [[ -z "$ray" ]]; then
    echo "ray-start: ray not found: create the venv (see README.md) or set KDSEARCH_VENV" >&2
    exit 2
fi
python="$(dirname "$ray")/python"

fail() {
    echo "ray-start: $*" >&2
    exit 2
}

head=0
address="${RAY_ADDRESS:-}"
dashboard_host=0
previous=""
for arg in "$@"; do
    case "$arg" in
        --head) head=1 ;;
        --address=*) address="${arg#--address=}" ;;
        --dashboard-host | --dashboard-host=*) dashboard_host=1 ;;
    esac
    if [[ "$previous" == --address ]]; then
        address="$arg"
    fi
    previous="$arg"
done

mode="${RAY_AUTH_MODE:-token}"
if [[ "${mode,,}" != token ]]; then
    fail "RAY_AUTH_MODE=$mode would start Ray without token authentication, open to anyone who can reach this" \
         "machine; unset RAY_AUTH_MODE (this script always uses token mode)"
fi
if ! "$ray" get-auth-token --help >/dev/null 2>&1; then
    fail "this Ray ($("$ray" --version 2>&1 || true)) has no token authentication; upgrade Ray in the venv" \
         "(.venv/bin/pip install -U 'ray[tune]')"
fi
export RAY_AUTH_MODE=token

# The token, where Ray looks for it: RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH names, then ~/.ray/auth_token.
copy_hint="copy the head node's token file (the one its ray-start.sh named, by default ~/.ray/auth_token) to"
copy_hint+=" ~/.ray/auth_token on this node (mode 0600), or set RAY_AUTH_TOKEN_PATH to a copy of it"
token_file=""
made=0
if [[ -z "${RAY_AUTH_TOKEN:-}" ]]; then
    if [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
        token_file="$RAY_AUTH_TOKEN_PATH"
        if [[ ! -s "$token_file" ]]; then
            fail "RAY_AUTH_TOKEN_PATH=$token_file is missing or empty; put the cluster's token there, or unset" \
                 "RAY_AUTH_TOKEN_PATH (a head then makes ~/.ray/auth_token)"
        fi
    else
        token_file="$HOME/.ray/auth_token"
        if [[ ! -s "$token_file" ]]; then
            if (( ! head )); then
                fail "no Ray authentication token on this node; $copy_hint"
            fi
            # umask 077: Ray writes a new token with the default umask, readable by every user of the machine.
            if ! generated="$(umask 077 && "$ray" get-auth-token --generate 2>&1 >/dev/null)" || [[ ! -s "$token_file" ]]
            then
                fail "could not make a Ray authentication token in $token_file: ${generated##*$'\n'}"
            fi
            made=1
        fi
    fi
fi

# Kept at 0600 when it is ours; a token others can read and we may not change is said once, here.
if [[ -n "$token_file" ]]; then
    if [[ -O "$token_file" ]]; then
        chmod 600 "$token_file" 2>/dev/null || true
    fi
    if [[ -n "$(find "$token_file" -maxdepth 0 -perm /044 2>/dev/null)" ]]; then
        echo "ray-start: warning: the Ray token $token_file is readable by other users and may not be changed here:" \
             "whoever reads it can run code on this cluster; have its owner run 'chmod 600 $token_file'" >&2
    fi
fi

extra=()
if (( head )); then
    if [[ -z "$token_file" ]]; then
        echo "ray-start: token authentication on, with the token in RAY_AUTH_TOKEN; every other node and every" \
             "machine that runs search.py --address needs the same RAY_AUTH_TOKEN" >&2
    else
        state="$( (( made )) && echo "made a new token in" || echo "the token is")"
        echo "ray-start: token authentication on; $state $token_file (mode $(stat -c %04a "$token_file")). Every other" \
             "node and every" \
             "machine that runs search.py --address needs a copy: a shared home has it already; otherwise copy" \
             "it to ~/.ray/auth_token there (mode 0600), or point RAY_AUTH_TOKEN_PATH at a copy" >&2
    fi
    if (( ! dashboard_host )); then
        extra+=(--dashboard-host=127.0.0.1)   # the dashboard only for this machine unless you ask otherwise
    fi
elif [[ -n "$address" && -x "$python" ]]; then
    # Check this node's token against the head now: `ray start` would retry for 20 s, then print a traceback.
    # tuning/cluster_auth.py is loaded on its own (it imports only Ray), not the whole kdsearch package; status 2
    # is its one-line refusal, anything else is left to `ray start`.
    status=0
    "$python" -c 'import importlib.util as u, sys
spec = u.spec_from_file_location("cluster_auth", sys.argv[1])
module = u.module_from_spec(spec)
spec.loader.exec_module(module)
sys.exit(module.main(sys.argv[2:]))' "$here/../tuning/cluster_auth.py" "$address" || status=$?
    if (( status == 2 )); then
        exit 2
    fi
fi

exec "$ray" start "$@" "${extra[@]}"
