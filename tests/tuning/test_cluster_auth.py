"""The token file kdsearch makes or finds is kept private (0600), and what it may not change is said once.

The clusters themselves are in tests/cluster/test_cluster_security.py; these need no Ray process.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tuning import cluster_auth


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME with no Ray variable, and no warning given yet in this process."""
    for name in list(os.environ):
        if name.startswith("RAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(cluster_auth, "_warned", set())
    return tmp_path


def _token(home: Path, mode: int) -> Path:
    path = home / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("a" * 64)
    path.chmod(mode)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_token_file_of_ours_is_made_private(home: Path) -> None:
    token = _token(home, 0o644)  # what Ray itself writes
    messages: list[str] = []
    cluster_auth.secure_token_file(messages.append)
    assert _mode(token) == 0o600 and messages == []


def test_a_token_others_can_read_and_we_may_not_change_is_said_once(home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token(home, 0o644)
    monkeypatch.setattr(os, "geteuid", lambda: token.stat().st_uid + 1)  # someone else's file
    messages: list[str] = []
    cluster_auth.secure_token_file(messages.append)
    cluster_auth.secure_token_file(messages.append)
    assert _mode(token) == 0o644  # not changed: it is not ours
    assert len(messages) == 1 and f"the Ray token {token} is readable by other users (mode 0644)" in messages[0]
    assert f"chmod 600 {token}" in messages[0]


def test_a_token_named_by_ray_auth_token_path_is_the_one_kept_private(home: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    default, named = _token(home, 0o644), home / "shared-token"
    named.write_text("b" * 64)
    named.chmod(0o640)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    cluster_auth.secure_token_file(print)
    assert _mode(named) == 0o600 and _mode(default) == 0o644  # Ray reads the named one


def test_a_local_run_gets_a_private_token_when_there_is_none(home: Path) -> None:
    cluster_auth.prepare_local_token(print)
    token = home / ".ray" / "auth_token"
    assert _mode(token) == 0o600 and _mode(token.parent) == 0o700
    assert len(token.read_text()) == 64 and int(token.read_text(), 16) > 0  # 256 random bits, hex, like Ray's
    first = token.read_text()
    cluster_auth.prepare_local_token(print)
    assert token.read_text() == first  # an existing token is kept


def test_a_local_run_with_token_mode_off_gets_no_token(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster_auth.prepare_local_token(print)
    assert not (home / ".ray").exists()


def test_a_ray_without_token_authentication_is_an_open_cluster(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_auth, "token_auth_available", lambda: False)
    with pytest.raises(cluster_auth.ClusterAuthError, match="has no token authentication") as refused:
        cluster_auth.authenticate("10.0.0.1:6379", allow_insecure=False, log=print)
    assert "--allow-insecure-cluster" in str(refused.value) and "\n" not in str(refused.value)
    messages: list[str] = []
    cluster_auth.authenticate("10.0.0.1:6379", allow_insecure=True, log=messages.append)
    assert len(messages) == 1 and "does not authenticate (--allow-insecure-cluster)" in messages[0]
