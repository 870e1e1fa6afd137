"""Ray token authentication for kdsearch: never join an open cluster, and keep the token private.

A Ray cluster without token authentication runs code for anyone who can reach its ports. ``authenticate``
refuses such a cluster for ``search.py --address`` (unless ``--allow-insecure-cluster``), turns Ray's token
mode on when a token exists, and checks that the cluster accepts it, all in milliseconds and before Ray
starts. ``prepare_local_token`` gives a local Ray instance a token that only its owner can read. The token
file is kept at mode 0600.

It imports nothing of kdsearch: ``cluster/ray-start.sh`` runs this file on its own (``main``) to check a
worker node's token against the head before ``ray start`` would retry for 20 s and print a traceback.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import ray

Log = Callable[[str], None]

MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"
PROBE_TIMEOUT_S = 5.0
# What one probe of a cluster's GCS can answer.
ACCEPTED, REFUSED, NO_ANSWER = "accepted", "refused", "no answer"
TOKEN_FIX = (f"give this machine the cluster's token: copy the head node's {DEFAULT_TOKEN_FILE} to "
             f"{DEFAULT_TOKEN_FILE} here (mode 0600), or set {TOKEN_PATH_VARIABLE} to a copy of it")
TOKEN_PLACES = f"{TOKEN_VARIABLE}, {TOKEN_PATH_VARIABLE}, {DEFAULT_TOKEN_FILE}"  # where Ray looks, in its order

_warned: set[str] = set()  # token files already warned about: once per process


class ClusterAuthError(Exception):
    """A cluster that must not be joined, or a token it refuses: one line naming the problem and the fix."""


def authenticate(address: str, allow_insecure: bool, log: Log) -> None:
    """Check, before ``ray.init``, that the cluster at ``address`` authenticates and accepts this machine's token.

    A cluster that accepts a made-up token is open: refused unless ``allow_insecure``, and then joined
    with token mode off (its nodes send no token). Otherwise token mode is turned on when a token exists
    (Ray 2.60 does that by itself only for ``address="auto"``; with an explicit address it connects without
    the token and retries for 20 s before a bare ``ConnectionError``), and a refused token is one line.
    A cluster that does not answer is left to ``ray.init``, which reports it.
    """
    where = f"--address {address}"
    if not token_auth_available():
        if not allow_insecure:
            raise ClusterAuthError(
                f"Ray {ray.__version__} has no token authentication, so the cluster at {where} runs code for anyone "
                "who reaches it; upgrade Ray (pip install -U 'ray[tune]'), or pass --allow-insecure-cluster if "
                "only trusted machines can reach its network")
        _warn_open(where, log)
        return
    gcs = _gcs_address(address)
    if gcs is None:
        return
    answer = probe(gcs, token=secrets.token_hex(32))
    if answer == NO_ANSWER:
        return
    if answer == ACCEPTED:
        if not allow_insecure:
            raise ClusterAuthError(
                f"the Ray cluster at {where} does not authenticate (it accepts any token): anyone who can reach it "
                "can run code on it and read its data; start it with cluster/ray-start.sh (token authentication), "
                "or pass --allow-insecure-cluster if only trusted machines can reach its network")
        _warn_open(where, log)
        _set_mode("disabled")  # this driver must not ask the open cluster's workers for a token either
        return
    mode, has_token = _use_token_if_any()
    if probe(gcs) != REFUSED:
        secure_token_file(log)
        return
    if mode is not None and mode.lower() != "token":
        raise ClusterAuthError(
            f"the Ray cluster at {where} uses token authentication but {MODE_VARIABLE}={mode} here; unset "
            f"{MODE_VARIABLE} to use the token Ray finds ({TOKEN_PLACES})")
    if not has_token:
        raise ClusterAuthError(f"the Ray cluster at {where} uses token authentication and no token was found "
                               f"({TOKEN_PLACES}); {TOKEN_FIX}")
    raise ClusterAuthError(f"the Ray cluster at {where} refused the authentication token from {token_source()}; "
                           f"{TOKEN_FIX}")


def prepare_local_token(log: Log) -> None:
    """Before a local ``ray.init``: make the token it will use, readable by its owner only, if there is none.

    Ray 2.60 turns token mode on for a new local instance unless ``RAY_AUTH_MODE`` says otherwise, and
    writes a missing token with the default umask (mode 0644: every user of the machine could read it).
    """
    if not token_auth_available() or os.environ.get(MODE_VARIABLE, "token").lower() != "token":
        return
    path = token_file()
    if path is not None and not _has_content(path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))  # what Ray's own generator makes: 256 random bits, hex
    secure_token_file(log)


def secure_token_file(log: Log) -> None:
    """Tighten the token file Ray reads to 0600; warn once when others can read it and it is not ours to change.

    Only a file owned by this user is changed (root does not rewrite another user's file). A token in
    ``RAY_AUTH_TOKEN`` has no file.
    """
    path = token_file()
    if path is None:
        return
    try:
        status = path.stat()
    except OSError:
        return
    if not status.st_mode & 0o077:
        return
    if status.st_uid == os.geteuid():
        try:
            path.chmod(0o600)
            return
        except OSError:  # a read-only file system: say so below
            pass
    if status.st_mode & (stat.S_IRGRP | stat.S_IROTH) and str(path) not in _warned:
        _warned.add(str(path))
        log(f"warning: the Ray token {path} is readable by other users (mode {stat.S_IMODE(status.st_mode):04o}) "
            "and kdsearch may not change it: whoever reads it can run code on your cluster; have its owner run "
            f"'chmod 600 {path}', or use a copy of your own ({TOKEN_PATH_VARIABLE}, mode 0600)")


def token_file() -> Path | None:
    """The file Ray reads the token from, in its own order (``None`` when ``RAY_AUTH_TOKEN`` holds it)."""
    if os.environ.get(TOKEN_VARIABLE):
        return None
    return Path(os.environ.get(TOKEN_PATH_VARIABLE) or DEFAULT_TOKEN_FILE).expanduser()


def token_source() -> str:
    """Where Ray reads the token from, for messages."""
    if os.environ.get(TOKEN_VARIABLE):
        return TOKEN_VARIABLE
    if os.environ.get(TOKEN_PATH_VARIABLE):
        return f"{TOKEN_PATH_VARIABLE} ({os.environ[TOKEN_PATH_VARIABLE]})"
    return DEFAULT_TOKEN_FILE


def token_auth_available() -> bool:
    """Whether this Ray has token authentication (Ray 2.5x and later)."""
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth  # noqa: F401
        from ray._raylet import AuthenticationTokenLoader, Config, GcsClient  # noqa: F401
    except ImportError:
        return False
    return True


def probe(gcs: str, token: str | None = None) -> str:
    """What the GCS at ``gcs`` says to one call: ``ACCEPTED``, ``REFUSED`` or ``NO_ANSWER``, in milliseconds.

    With ``token`` the call carries that token, otherwise whatever this process would send. It goes
    through Ray's own client, given a made-up cluster id so that it does not first fetch the real one
    (that retries for 20 s): the GCS checks the token before the cluster id, so an accepted token answers
    ``WrongClusterID`` and a refused one (or none, where one is needed) ``InvalidAuthToken``.
    """
    from ray._raylet import GcsClient

    saved = {name: os.environ.get(name) for name in (MODE_VARIABLE, TOKEN_VARIABLE)}
    if token is not None:
        os.environ[TOKEN_VARIABLE] = token
        _set_mode("token")
    try:
        GcsClient(address=gcs, cluster_id="01" * 28).internal_kv_get(b"kdsearch-auth-probe", None,
                                                                     timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.AuthenticationError as error:
        if "InvalidAuthToken" in str(error):
            return REFUSED
        return ACCEPTED if "WrongClusterID" in str(error) else NO_ANSWER
    except Exception:  # noqa: BLE001 - no cluster, a timeout: not an authentication answer
        return NO_ANSWER
    finally:
        if token is not None:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _reload_auth_config()
    return ACCEPTED


def _use_token_if_any() -> tuple[str | None, bool]:
    """Token mode on when ``RAY_AUTH_MODE`` is unset and a token exists; returns (the mode, whether a token exists)."""
    from ray._raylet import AuthenticationTokenLoader

    mode = os.environ.get(MODE_VARIABLE)
    has_token = AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)
    if mode is None and has_token:
        _set_mode("token")
        mode = "token"
    return mode, has_token


def _set_mode(mode: str) -> None:
    """``RAY_AUTH_MODE`` for this process and the Ray processes it starts, with Ray's cached config refreshed."""
    os.environ[MODE_VARIABLE] = mode
    _reload_auth_config()


def _reload_auth_config() -> None:
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # Ray caches RAY_AUTH_MODE in its config, and the token in its loader
    AuthenticationTokenLoader.instance().reset_cache()


def _gcs_address(address: str) -> str | None:
    """HOST:PORT of the GCS for ``address`` (``auto`` resolved the way Ray does), or ``None``."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address(address)
    except Exception:  # noqa: BLE001 - no cluster to find: ray.init reports it
        return None


def _warn_open(where: str, log: Log) -> None:
    if where not in _warned:
        _warned.add(where)
        log(f"warning: the Ray cluster at {where} does not authenticate (--allow-insecure-cluster): anyone who can "
            "reach its network can run code on it")


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def main(argv: list[str]) -> int:
    """``cluster/ray-start.sh``'s check on a worker node: does the head at ``argv[0]`` accept this node's token?

    Exit 2 with one line when the head is open (kdsearch never joins one) or refuses the token; 0 otherwise
    (a head that does not answer is left to ``ray start``).
    """
    address = argv[0]
    gcs = _gcs_address(address) if token_auth_available() else None
    if gcs is None:
        return 0
    _set_mode("token")  # what ray-start.sh runs `ray start` with
    if probe(gcs, token=secrets.token_hex(32)) == ACCEPTED:
        print(f"ray-start: the Ray head at {address} does not authenticate (it accepts any token); restart it with "
              "cluster/ray-start.sh --head", file=sys.stderr)
        return 2
    if probe(gcs) == REFUSED:
        print(f"ray-start: the Ray head at {address} refused this node's token ({token_source()}); copy the head "
              f"node's token file (the one its ray-start.sh named, by default {DEFAULT_TOKEN_FILE}) to "
              f"{DEFAULT_TOKEN_FILE} on this node (mode 0600), or set {TOKEN_PATH_VARIABLE} to a copy of it",
              file=sys.stderr)
        return 2
    return 0
