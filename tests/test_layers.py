"""The layering rules of docs/ARCHITECTURE.md: ``trainers`` works without Ray and Optuna, ``spaces`` without torch
and Ray, ``runfolder`` without any of torch, Ray and Optuna, ``reports`` without torch and Ray.

Checked twice: dynamically (a fresh interpreter imports the package and every submodule, then looks at
``sys.modules``, which also catches imports made by third-party dependencies) and statically (no file of
the package has such an import statement, not even a lazy one inside a function).
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuning import DRIVER_ONLY_MODULES, WORKER_MODULES

REPO_ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "trainers": ("ray", "optuna"),
    "spaces": ("torch", "ray"),
    "runfolder": ("torch", "ray", "optuna"),
    "reports": ("torch", "ray"),
}

IMPORT_ALL = """
import importlib, json, pkgutil, sys
package = importlib.import_module({package!r})
names = [package.__name__]
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(module.name)
    names.append(module.name)
loaded = sorted({{name.split(".")[0] for name in sys.modules}})
print(json.dumps({{"imported": names, "loaded": loaded}}))
"""


@functools.cache
def _import_in_fresh_interpreter(package: str) -> dict[str, list[str]]:
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL.format(package=package)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_the_package_and_every_submodule_loads_no_forbidden_module(package: str) -> None:
    result = _import_in_fresh_interpreter(package)
    source_modules = {path.stem for path in (REPO_ROOT / package).glob("*.py") if path.stem != "__init__"}
    imported = {name.split(".", 1)[1] for name in result["imported"] if "." in name}
    assert source_modules <= imported, f"not every submodule of {package} was imported: {source_modules - imported}"
    leaked = sorted(set(FORBIDDEN[package]) & set(result["loaded"]))
    assert leaked == [], f"importing {package} loaded {leaked}"


def test_the_fresh_interpreter_check_sees_the_imports_of_submodules() -> None:
    # The dynamic check is only worth something if sys.modules really shows what submodules import.
    assert "torch" in _import_in_fresh_interpreter("trainers")["loaded"]
    assert "yaml" in _import_in_fresh_interpreter("spaces")["loaded"]  # imported by spaces._overrides only


def _imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
              in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_source_file_imports_a_forbidden_module(package: str) -> None:
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    assert files, f"no source files under {package}/"
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(_imported_top_level_names(path) & set(FORBIDDEN[package]))
        for path in files
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_static_check_sees_every_import_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import ray.tune\n"
        "from optuna.samplers import TPESampler\n"
        "def lazy():\n"
        "    import torch as t\n"
        "    importlib.import_module('ray.air')\n"
        "from . import sibling\n"
    )
    assert _imported_top_level_names(sample) == {"ray", "optuna", "torch"}


# A Ray worker imports kdsearch's code in a fresh process (a trial actor, a final-stage task worker): each module
# it has no use for would be paid again by every worker of every search.
WORKER_IMPORT = """
import json, sys
import {module}
print(json.dumps(sorted(name for name in {unwanted!r} if name in sys.modules)))
"""


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_a_ray_workers_import_leaves_out_what_only_the_driver_uses(module: str) -> None:
    code = WORKER_IMPORT.format(module=module, unwanted=DRIVER_ONLY_MODULES)
    completed = subprocess.run([sys.executable, "-c", code],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


def test_the_tuning_package_still_gives_its_public_names() -> None:
    # tuning/__init__ imports them on first use; ``tuning.run`` is the function, not a module of that name.
    import tuning
    from tuning import ResultsDiskFull, RunOutcome, SearchFailed, SearchInterrupted, SearchSpec, UserError, build_spec
    from tuning import run as run_function

    assert callable(run_function) and run_function.__module__ == "tuning.runner"
    assert [ResultsDiskFull, RunOutcome, SearchFailed, SearchInterrupted, SearchSpec, UserError, build_spec]
    assert all(getattr(tuning, name) is not None for name in tuning.__all__)
    assert set(tuning.__all__) <= set(dir(tuning))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tuning.nothing  # noqa: B018
