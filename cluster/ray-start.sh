#!/usr/bin/env bash
# `ray start` for a kdsearch cluster, with Ray's token authentication sorted out:
#
#   cluster/ray-start.sh --head --port=6379                  # on the head node
#   cluster/ray-start.sh --address=HEAD:6379                 # on every other node
#   .venv/bin/python search.py --address HEAD:6379 ...       # anywhere with the same token
#
# Ray 2.5x+ turns token authentication on for `ray start --head` when a token exists (RAY_AUTH_TOKEN,
# RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; any earlier local Ray run makes ~/.ray/auth_token), but
# `ray start --address` only joins such a head with RAY_AUTH_MODE=token set. This script sets it whenever a
# token is there (unless RAY_AUTH_MODE is set already) and then runs the venv's `ray start` with your
# arguments. search.py --address does the same by itself. Every node needs the head's token: a shared
# home directory, or RAY_AUTH_TOKEN_PATH pointing at a copy of it.
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

if [[ -z "${RAY_AUTH_MODE:-}" ]]; then
    if [[ -n "${RAY_AUTH_TOKEN:-}" || ( -n "${RAY_AUTH_TOKEN_PATH:-}" && -s "${RAY_AUTH_TOKEN_PATH:-}" ) ||
          -s "$HOME/.ray/auth_token" ]]; then
        export RAY_AUTH_MODE=token
    fi
fi
exec "$ray" start "$@"
