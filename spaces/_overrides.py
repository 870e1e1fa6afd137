"""``--space FILE``: narrow, widen or fix any parameter of a space from YAML or JSON.

File shape (every key optional)::

    families:                 # a list keeps those registered families with their default bounds,
      cnn: {depth: {low: 1, high: 2}, width: {low: 8, high: 32, step: 8}}
      resnet: {}              # a mapping also sets their depth/width bounds
    temperature: {low: 1, high: 10, log: true}   # a range
    alpha: 0.5                                   # a single value fixes the parameter
    batch_size: [64, 128]                        # a list gives the choices
    augment: [false, true]                       # student augmentation becomes a searched choice
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from spaces._params import ChoiceParam, FloatParam, IntParam, Param
from spaces._space import SPACE_PARAMETERS, FamilyBounds, SearchSpace


class SpaceError(ValueError):
    """A search-space file or override is invalid; the message names the file and the value."""


# Parameters a default space does not search: an override starts from these kinds.
_UNSEARCHED_DEFAULTS: dict[str, Param] = {"augment": ChoiceParam((False, True))}
_RANGE_KEYS = {"low", "high", "log", "step"}


def load_space_file(path: str | Path, base: SearchSpace,
                    families: Mapping[str, FamilyBounds] | None = None) -> SearchSpace:
    """Read ``path`` (``.json``, ``.yaml`` or ``.yml``) and apply it on top of ``base``.

    ``families`` are the families a file may name, with their default bounds (the registered student
    families); by default, those of ``base``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpaceError(f"space file {path}: cannot be read ({error.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise SpaceError(f"space file {path} is not UTF-8 text; give a YAML or JSON file") from None
    try:
        overrides = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SpaceError(f"space file {path} is malformed: {_syntax_error(error)}; fix the syntax") from None
    try:
        return apply_overrides(base, overrides if overrides is not None else {}, families)
    except SpaceError as error:
        raise SpaceError(f"space file {path}: {error}") from None


def apply_overrides(base: SearchSpace, overrides: Any,
                    families: Mapping[str, FamilyBounds] | None = None) -> SearchSpace:
    """Return ``base`` with each parameter named in ``overrides`` replaced.

    ``families`` are the families ``overrides`` may name, with their default bounds; by default, those of
    ``base``. The result is checked against the trainer's limits (``SpaceError`` naming the value).
    """
    if not isinstance(overrides, dict):
        raise SpaceError(f"expected a mapping of parameter names, got {type(overrides).__name__}")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name == "families":
            changes["families"] = _families(value, {**(families or {}), **base.families})
        elif name in SPACE_PARAMETERS:
            current = getattr(base, name)
            changes[name] = _checked_param(name, value, current if current is not None else _UNSEARCHED_DEFAULTS[name])
        else:
            raise SpaceError(_unknown("parameter", name, ("families", *SPACE_PARAMETERS)))
    try:
        return replace(base, **changes, metadata={**base.metadata, "overridden": sorted(changes)})
    except ValueError as error:
        raise SpaceError(str(error)) from None


def _families(value: Any, known: Mapping[str, FamilyBounds]) -> dict[str, FamilyBounds]:
    """The families an override names, with their bounds: ``known``'s, narrowed where it says so."""
    if isinstance(value, list):
        names = value
    elif isinstance(value, dict):
        names = list(value)
    else:
        names = []
    if not names or not all(isinstance(name, str) for name in names):
        raise SpaceError("families: give a non-empty list of family names or a mapping of them")
    if isinstance(value, list):
        value = {name: {} for name in names}
    families: dict[str, FamilyBounds] = {}
    for name, bounds in value.items():
        if name not in known:
            raise SpaceError(_unknown("student family", name, tuple(known)))
        bounds = bounds or {}
        if not isinstance(bounds, dict):
            raise SpaceError(f"families.{name}: expected a mapping with depth and/or width")
        for key in bounds:
            if key not in ("depth", "width"):
                raise SpaceError(_unknown(f"key in families.{name}", key, ("depth", "width")))
        default = known[name]
        families[name] = FamilyBounds(
            depth=_checked_param(f"families.{name}.depth", bounds.get("depth"), default.depth),
            width=_checked_param(f"families.{name}.width", bounds.get("width"), default.width),
        )
    return families


def _param(value: Any, default: Param) -> Param:
    """Build the override of one parameter, keeping the kind (float, int, choice) of ``default``."""
    if value is None:
        return default
    if isinstance(value, list):
        return ChoiceParam(tuple(value))
    if isinstance(value, dict):
        return _range(value, default)
    if isinstance(default, ChoiceParam):
        return ChoiceParam((value,))
    if isinstance(default, IntParam):
        return IntParam(value, value)
    return FloatParam(value, value)


def _range(value: dict[str, Any], default: Param) -> Param:
    if "choices" in value:
        extra = set(value) - {"choices"}
        if extra:
            raise SpaceError(f"'choices' cannot be combined with {sorted(extra)}")
        if not isinstance(value["choices"], list):
            raise SpaceError("'choices' must be a list")
        return ChoiceParam(tuple(value["choices"]))
    for key in value:
        if key not in _RANGE_KEYS:
            raise SpaceError(_unknown("range key", key, (*sorted(_RANGE_KEYS), "choices")))
    if isinstance(default, ChoiceParam):
        raise SpaceError("this parameter is categorical: give a list of choices, not a range")
    low = value.get("low", default.low)
    high = value.get("high", default.high)
    log = value.get("log", default.log)
    if not isinstance(log, bool):
        raise SpaceError(f"'log' must be true or false, got {log!r}")
    if isinstance(default, IntParam):
        return IntParam(low, high, step=value.get("step", 1 if log else default.step), log=log)
    if "step" in value:
        raise SpaceError("'step' applies to integer parameters only")
    return FloatParam(low, high, log=log)


def _checked_param(name: str, value: Any, default: Param) -> Param:
    """``_param`` with any error prefixed by the parameter's name."""
    try:
        return _param(value, default)
    except ValueError as error:  # SpaceError included
        raise SpaceError(f"{name}: {error}") from None


def _syntax_error(error: json.JSONDecodeError | yaml.YAMLError) -> str:
    """One line saying what is wrong and where (JSON messages carry the place; YAML's are multi-line)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        problem = error.problem or error.context or "invalid YAML"
        mark = error.problem_mark
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(error).splitlines()[0]


def _unknown(what: str, name: Any, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; known: {', '.join(known)}"
