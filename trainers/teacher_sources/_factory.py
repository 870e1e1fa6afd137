"""``--teacher my_package.my_module:build_model`` or ``--teacher path/to/file.py:build_model``: the user's class.

The factory is called with ``num_classes`` and ``in_channels`` keyword arguments where it takes them, and must
return an ``nn.Module``. A Ray worker imports it again the same way (a package by its folder on
``sys.path``, a file by its path), so the user's class need not be installed anywhere.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from trainers.teacher_sources._common import TeacherCheckpointError, first_line
from trainers.teacher_sources._library import LIBRARIES


def is_factory(teacher: str) -> bool:
    """Whether ``--teacher`` names a factory (``module:function`` or ``file.py:function``)."""
    target, _, function = teacher.rpartition(":")
    return bool(target) and bool(function) and target not in LIBRARIES


def is_file_target(target: str) -> bool:
    """Whether a factory's ``target`` (before the ``:``) is a file path rather than a dotted module name."""
    return target.endswith(".py") or "/" in target


def import_root(module_name: str, file: str) -> str:
    """The ``sys.path`` folder ``module_name`` was imported from: ``a.b.c`` lives at ROOT/a/b/c.py or
    ROOT/a/b/c/__init__.py, and ROOT is what another process needs on ``sys.path`` to import it too."""
    levels = module_name.count(".") + (1 if Path(file).name == "__init__.py" else 0)
    return str(Path(file).absolute().parents[levels])


@dataclass(frozen=True)
class FactoryRecipe:
    """Calls the same factory again (in a Ray worker); the weights travel beside it."""

    carries_weights: ClassVar[bool] = False
    teacher: str
    root: str | None  # the folder to put on sys.path for a dotted module, None for a file
    num_classes: int
    in_channels: int

    def build(self) -> nn.Module:
        return call_factory(self.teacher, self.num_classes, self.in_channels, self.root)[0]


def call_factory(teacher: str, num_classes: int, in_channels: int, root: str | None = None
                 ) -> tuple[nn.Module, str | None]:
    """The model ``teacher``'s factory returns, and the folder its package was imported from."""
    function, root = _resolve(teacher, root)
    parameters = inspect.signature(function).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    offered = {"num_classes": num_classes, "in_channels": in_channels}
    try:
        model = function(**{key: value for key, value in offered.items() if takes_any or key in parameters})
    except Exception as error:  # noqa: BLE001 - the user's code can raise anything
        raise TeacherCheckpointError(f"--teacher {teacher}: the factory raised {first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise TeacherCheckpointError(f"--teacher {teacher}: the factory returned a {type(model).__name__}, "
                                     "not a torch.nn.Module")
    return model, root


def _resolve(teacher: str, root: str | None) -> tuple[Callable[..., Any], str | None]:
    target, _, name = teacher.rpartition(":")
    if is_file_target(target):
        module = _import_file(teacher, Path(target).expanduser().absolute())
    else:
        module, root = _import_module(teacher, target, root)
    function = getattr(module, name, None)
    if not callable(function):
        raise TeacherCheckpointError(f"--teacher {teacher}: {target} has no function {name!r}")
    return function, root


def _import_file(teacher: str, path: Path) -> Any:
    if not path.is_file():
        raise TeacherCheckpointError(f"--teacher {teacher}: {path} does not exist")
    # One module name per file, so the user's classes are picklable by reference within this process.
    module_name = f"kdsearch_teacher_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's code can raise anything
        del sys.modules[module_name]
        raise TeacherCheckpointError(f"--teacher {teacher}: importing {path} raised {first_line(error)}") from None
    return module


def _import_module(teacher: str, name: str, root: str | None) -> tuple[Any, str | None]:
    if root is not None and root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise TeacherCheckpointError(f"--teacher {teacher}: cannot import {name} ({first_line(error)}); run from "
                                     "the folder holding it, add that folder to PYTHONPATH, or give "
                                     "path/to/file.py:function") from None
    except Exception as error:  # noqa: BLE001 - the user's code can raise anything
        raise TeacherCheckpointError(f"--teacher {teacher}: importing {name} raised {first_line(error)}") from None
    file = getattr(module, "__file__", None)
    if file is None:
        return module, root
    return module, import_root(name, file)
