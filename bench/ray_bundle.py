"""Can a GPU machine with torch but no network run ``search.py``? Ray, stripped, with Optuna and plotly, as wheels
that travel with the repository (issue 24, target 5; a measurement, not a test).

    .venv/bin/python bench/ray_bundle.py --out .whl                            # CPython 3.12, the GPU machines'
    .venv/bin/python bench/ray_bundle.py --out /tmp/b311 --python-version 3.11 # this venv's Python: try it here

Downloads, with ``pip download --no-deps``, manylinux x86-64 wheels for ``--python-version``:
- Ray, Optuna and plotly, at this venv's versions;
- the packages they need that the GPU machines' image lacks (``DEVICE_MISSING``: the image's package list in the
  device tool's KINDS.md, read 2026-11-17, holds torch, numpy, pandas, pyarrow, grpcio, protobuf, pyyaml,
  requests, aiohttp, msgpack, narwhals and the rest).

Then it strips Ray's wheel of what a kdsearch run never loads (``STRIPPED``: the Java jar, the dashboard's
web client, RLlib, Serve and Ray's LLM library) and prints each wheel's size and the total. The total includes
the repository's tracked files, against the 64 MiB one device call carries.

Installing the wheels there, before ``search.py``:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 search.py --budget 20

With ``--python-version 3.11``, the same stripped wheels can be tried on this machine in a fresh ``--target``
folder put first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CARRY_LIMIT_BYTES = 64 * 2**20  # what one device call carries: the working tree and the carried paths
# Paths of Ray's wheel a kdsearch run never loads: the Java workers' jar, the dashboard's web client
# (kdsearch starts Ray with include_dashboard=False), and the libraries kdsearch does not use.
STRIPPED = ("ray/jars/", "ray/dashboard/client/", "ray/rllib/", "ray/serve/", "ray/llm/")
BUNDLED = ("ray", "optuna", "plotly")
# What Ray's core and Tune, Optuna and plotly need that the GPU machines' image lacks.
DEVICE_MISSING = ("sqlalchemy", "greenlet", "alembic", "mako", "colorlog", "jsonschema",
                  "jsonschema-specifications", "referencing", "rpds-py")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def strip_wheel(wheel: Path, destination: Path, prefixes: tuple[str, ...] = STRIPPED) -> list[str]:
    """Write ``wheel`` to ``destination`` without the files under ``prefixes``, its RECORD rewritten to match
    (a wheel installer reads RECORD); returns the names left out."""
    dropped: list[str] = []
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as target:
        record_name = next(name for name in source.namelist() if name.endswith(".dist-info/RECORD"))
        for info in source.infolist():
            if info.filename.startswith(prefixes):
                dropped.append(info.filename)
            elif info.filename != record_name:
                target.writestr(info, source.read(info.filename))
        kept = [line for line in source.read(record_name).decode().splitlines()
                if line and not line.split(",", 1)[0].startswith(prefixes)]
        target.writestr(record_name, "\n".join(kept) + "\n")
    return dropped


def download(requirement: str, python_version: str, folder: Path) -> Path:
    """One wheel of ``requirement`` for ``python_version`` on manylinux x86-64, into ``folder`` (which holds
    no copy of it yet)."""
    before = set(folder.glob("*.whl"))
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(folder),
                    requirement], check=True)
    (wheel,) = set(folder.glob("*.whl")) - before  # --no-deps: exactly one
    return wheel


def pinned(name: str) -> str:
    """``name==version`` at this venv's version, or ``name`` alone when it is not installed here."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def tracked_bytes(repository: Path) -> int:
    """The size of the repository's tracked files: what travels with every device call besides the wheels."""
    names = subprocess.run(["git", "-C", str(repository), "ls-files", "-z"], capture_output=True, check=True
                           ).stdout.decode().split("\0")
    return sum((repository / name).stat().st_size for name in names if name and (repository / name).is_file())


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the wheels (created)")
    parser.add_argument("--python-version", default="3.12", help="the target CPython (default 3.12)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as downloads:
        for name in (*BUNDLED, *DEVICE_MISSING):
            wheel = download(pinned(name), args.python_version, Path(downloads))
            if name == "ray":
                stripped = args.out / wheel.name
                dropped = strip_wheel(wheel, stripped)
                print(f"ray: {wheel.name} {mib(wheel.stat().st_size)}, stripped of {len(dropped)} files under "
                      f"{', '.join(STRIPPED)}: {mib(stripped.stat().st_size)}")
                sizes[wheel.name] = stripped.stat().st_size
            else:
                (args.out / wheel.name).write_bytes(wheel.read_bytes())
                sizes[wheel.name] = wheel.stat().st_size
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"  {name:70s} {mib(size):>10s}")
    repository = tracked_bytes(Path(__file__).resolve().parents[1])
    total = sum(sizes.values()) + repository
    print(f"wheels {mib(sum(sizes.values()))} + the repository's tracked files {mib(repository)} = {mib(total)} "
          f"against the {mib(CARRY_LIMIT_BYTES)} a device call carries: "
          f"{'fits' if total <= CARRY_LIMIT_BYTES else 'does NOT fit'}")


if __name__ == "__main__":
    main()
