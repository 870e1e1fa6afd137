"""``bench/ray_bundle.py``'s stripping: a wheel without what a kdsearch run never loads, which pip still installs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from base64 import urlsafe_b64encode
from pathlib import Path

from tests.bench.scripts import load_bench_script

bundle = load_bench_script("ray_bundle")

DIST_INFO = "ray-9.9.9.dist-info"
FILES = {
    "ray/__init__.py": b"VERSION = '9.9.9'\n",
    "ray/tune/__init__.py": b"",
    "ray/jars/ray_dist.jar": b"java" * 100,
    "ray/dashboard/__init__.py": b"",
    "ray/dashboard/client/build/index.html": b"<html></html>",
    "ray/rllib/__init__.py": b"",
    f"{DIST_INFO}/METADATA": b"Metadata-Version: 2.1\nName: ray\nVersion: 9.9.9\n",
    f"{DIST_INFO}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}


def _record_line(name: str, content: bytes) -> str:
    digest = urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(content)}"


def _wheel(path: Path) -> Path:
    """A small wheel in the real format: its files and a RECORD with their hashes."""
    record = "\n".join([*(_record_line(name, content) for name, content in FILES.items()),
                        f"{DIST_INFO}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, content in FILES.items():
            wheel.writestr(name, content)
        wheel.writestr(f"{DIST_INFO}/RECORD", record)
    return path


def test_a_stripped_wheel_keeps_the_rest_and_installs(tmp_path: Path) -> None:
    stripped = tmp_path / "out" / "ray-9.9.9-py3-none-any.whl"
    stripped.parent.mkdir()
    dropped = bundle.strip_wheel(_wheel(tmp_path / "ray-9.9.9-py3-none-any.whl"), stripped)
    assert sorted(dropped) == ["ray/dashboard/client/build/index.html", "ray/jars/ray_dist.jar",
                               "ray/rllib/__init__.py"]
    with zipfile.ZipFile(stripped) as wheel:
        names = set(wheel.namelist())
        record = wheel.read(f"{DIST_INFO}/RECORD").decode()
        assert wheel.read("ray/__init__.py") == FILES["ray/__init__.py"]
    assert names == {*FILES, f"{DIST_INFO}/RECORD"} - set(dropped)
    assert "jars" not in record and "client" not in record and "rllib" not in record
    assert _record_line("ray/tune/__init__.py", b"") in record
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), str(stripped)], check=True)
    assert (site / "ray" / "tune" / "__init__.py").exists() and (site / "ray" / "dashboard" / "__init__.py").exists()
    assert not (site / "ray" / "jars").exists() and not (site / "ray" / "rllib").exists()


def test_the_bundle_is_measured_against_what_a_device_call_carries() -> None:
    assert bundle.CARRY_LIMIT_BYTES == 64 * 2**20
    assert bundle.tracked_bytes(Path(__file__).resolve().parents[2]) > 0
    assert bundle.mib(3 * 2**20 // 2) == "1.5 MiB"
