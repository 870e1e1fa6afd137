"""The distillation search space and its define-by-run sampler.

Which parameters exist, what they mean and which values the trainer accepts come from the table in
``spaces._parameters``; this module holds the default ranges and the conditional structure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spaces._parameters import FEATURE_LOSSES, PARAMETERS
from spaces._params import ChoiceParam, FloatParam, IntParam, Param, TrialLike

# A space holds one distribution for each of these; family, depth and width are held per family.
SPACE_PARAMETERS = tuple(name for name in PARAMETERS if name not in ("family", "depth", "width"))
# Sampled only with a teacher; the others are the optimisation recipe every trial samples.
DISTILLATION_PARAMETERS = ("alpha", "temperature", "feature_loss", "beta", "distill_interval", "init_from_teacher")


@dataclass(frozen=True)
class FamilyBounds:
    """Depth (blocks per stage) and width (channels of the first stage) of one student family.

    ``max_width`` maps a depth to the widest width that fits a size bound at that depth (see
    ``spaces.bound_space``); a depth missing from a non-empty ``max_width`` has no fitting width.
    """

    depth: IntParam
    width: IntParam
    max_width: dict[int, int] = field(default_factory=dict)

    def width_at(self, depth: int) -> IntParam:
        """The width range to sample at ``depth``: ``width`` cut at the bound's widest fitting width."""
        if not self.max_width:
            return self.width
        return replace(self.width, high=min(self.width.high, self.max_width[depth]))

    def to_dict(self) -> dict[str, Any]:
        described: dict[str, Any] = {"depth": self.depth.to_dict(), "width": self.width.to_dict()}
        if self.max_width:
            described["max_width"] = {str(depth): width for depth, width in sorted(self.max_width.items())}
        return described


@dataclass(frozen=True)
class SearchSpace:
    """Every searched quantity of one distillation trial, with validated bounds.

    ``families`` maps each allowed student family to its own depth/width ranges, so the
    architecture parameters are conditional on the family. ``beta`` (the feature-loss weight)
    is sampled only when ``feature_loss`` is not ``"none"``, and ``init_from_teacher`` only when
    the student family matches the teacher's.
    """

    families: dict[str, FamilyBounds]
    alpha: Param = FloatParam(0.0, 0.95)
    temperature: Param = FloatParam(1.0, 20.0, log=True)
    feature_loss: Param = ChoiceParam(FEATURE_LOSSES)
    beta: Param = FloatParam(0.05, 50.0, log=True)
    lr: Param = FloatParam(0.01, 0.4, log=True)
    weight_decay: Param = FloatParam(1e-5, 1e-3, log=True)
    batch_size: Param = ChoiceParam((64, 128))
    distill_interval: Param = ChoiceParam((1, 2, 4, 8))
    init_from_teacher: Param = ChoiceParam((False, True))
    # Student augmentation; None: not searched, the dataset's default (digits: plain images).
    augment: ChoiceParam | None = None
    # False: no teacher at all (the baseline's own search): no KD parameter is sampled, alpha is 0.
    distills: bool = True
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.families:
            raise ValueError("the space allows no student family: list at least one")
        for name in ("depth", "width"):
            # Optuna keeps one distribution kind per parameter name across a study.
            scales = {family: getattr(bounds, name).log for family, bounds in self.families.items()}
            if len(set(scales.values())) > 1:
                raise ValueError(f"families: {name} must be on a log scale for every family or for none, got "
                                 + ", ".join(f"{family} log={log}" for family, log in scales.items()))
        # The trainer's limits, checked now: a bad value fails here, not in every trial.
        for family, bounds in self.families.items():
            for name in ("depth", "width"):
                _check_limits(name, getattr(bounds, name), prefix=f"families.{family}: ")
        for name in space_parameters(self):
            _check_limits(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (saved in spec.json, shown in the report)."""
        described: dict[str, Any] = {
            "families": {name: bounds.to_dict() for name, bounds in self.families.items()}
        }
        described.update({name: getattr(self, name).to_dict() for name in space_parameters(self)})
        if not self.distills:
            described["distills"] = False
        return described


ParamsOf = Callable[[str, int, int], int]
# A student's size by any measure (parameters, FLOPs, latency), from (family, depth, width).
SizeOf = Callable[[str, int, int], float]
# The usual hand-set KD recipe (Hinton et al.'s soft targets at T = 4 with most of the weight on them, plain
# SGD settings): the search evaluates it first, so what it hands back is never worse on validation.
STANDARD_RECIPE: dict[str, Any] = {"alpha": 0.9, "temperature": 4.0, "feature_loss": "none", "lr": 0.05,
                                   "weight_decay": 5e-4, "batch_size": 64, "distill_interval": 1,
                                   "init_from_teacher": False, "augment": False}
STANDARD_DEPTH = 2


def standard_point(space: SearchSpace) -> dict[str, Any]:
    """The first configuration a search evaluates: the standard recipe on a student as wide as the space
    allows at depth 2 (or the nearest depth) of its first family. A parameter the space cannot take the
    standard value for is left out, and Optuna samples it."""
    family, bounds = next(iter(space.families.items()))
    depth = min(max(STANDARD_DEPTH, bounds.depth.low), bounds.depth.high)
    depth = depth if bounds.depth.contains(depth) else bounds.depth.low
    point: dict[str, Any] = {"family": family, "depth": depth, "width": bounds.width_at(depth).high}
    for name in space_parameters(space):
        if name not in STANDARD_RECIPE or (not space.distills and name in DISTILLATION_PARAMETERS):
            continue
        if getattr(space, name).contains(STANDARD_RECIPE[name]):
            point[name] = STANDARD_RECIPE[name]
    return point


def space_parameters(space: SearchSpace) -> list[str]:
    """The names of the distributions ``space`` holds, in the table's order (``augment`` only when set)."""
    return [name for name in SPACE_PARAMETERS if getattr(space, name) is not None]


def _check_limits(name: str, param: Param, prefix: str = "") -> None:
    """``ValueError`` naming the first value of ``param`` the trainer would refuse for parameter ``name``.

    The two ends of a range are enough to check: every limit in the table is an interval.
    """
    parameter = PARAMETERS[name]
    if isinstance(param, ChoiceParam):
        values = [("", choice) for choice in param.choices]
    else:
        values = [("low ", param.low), ("high ", param.high)]
    for label, value in values:
        if not parameter.accepts(value):
            raise ValueError(f"{prefix}{name} must be {parameter.limits}, got {label}{value!r}")


@dataclass(frozen=True)
class SizeBound:
    """One size limit on the students: ``measure(family, depth, width) <= limit``.

    ``key`` names the measure (``params``, ``flops``, ``latency_ms``: the space's metadata records
    ``max_<key>``); ``unit`` words it in messages (``parameters``, ``FLOPs``, ``ms of latency``). The
    measure must grow with width at a fixed depth and with depth at a fixed width, as model sizes do.
    """

    key: str
    limit: float
    measure: SizeOf
    unit: str

    def describe(self, value: float) -> str:
        """``value`` in this bound's unit: ``12,400 parameters``, ``1.5 ms of latency``."""
        number = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.3g}"
        return f"{number} {self.unit}"


def bound_space(space: SearchSpace, params_of: ParamsOf, max_params: int) -> SearchSpace:
    """``space`` narrowed to the students with at most ``max_params`` parameters (see :func:`bound_space_to`)."""
    return bound_space_to(space, [SizeBound("params", max_params, params_of, "parameters")])


def bound_space_to(space: SearchSpace, bounds: Sequence[SizeBound]) -> SearchSpace:
    """``space`` narrowed to the students that meet every bound in ``bounds``.

    The measures come from the caller (the search layer builds the models; this package stays
    torch-free). They grow with depth and width, so each depth keeps the widths up to the widest that
    fits, found by bisection on the width grid (a costly measure, such as latency, is taken about
    log2(widths) times per depth); depths and families with no fitting width are dropped. Raises
    ``ValueError`` naming the bound and the smallest student when nothing fits.
    """
    if not bounds:
        return space

    def fits(family: str, depth: int, width: int) -> bool:
        # Cheap measures first: a student over the parameter bound is never timed.
        return all(bound.measure(family, depth, width) <= bound.limit for bound in bounds)

    families: dict[str, FamilyBounds] = {}
    for name, bounds_of_family in space.families.items():
        max_width: dict[int, int] = {}
        widths = _grid(bounds_of_family.width)
        for depth in _grid(bounds_of_family.depth):
            fitting = _widest_fitting(widths, lambda width, d=depth, n=name: fits(n, d, width))
            if fitting is not None:
                max_width[depth] = fitting
        if max_width:
            depth = _fitting_run(bounds_of_family.depth, max_width)
            families[name] = FamilyBounds(depth=depth, width=bounds_of_family.width,
                                          max_width={d: max_width[d] for d in _grid(depth)})
    if not families:
        raise ValueError(_nothing_fits(space, bounds))
    limits = {f"max_{bound.key}": bound.limit for bound in bounds}
    return replace(space, families=families, metadata={**space.metadata, **limits})


def _nothing_fits(space: SearchSpace, bounds: Sequence[SizeBound]) -> str:
    """Why no student fits: the first bound even the smallest student misses, with that student's size."""
    corners = [(name, depth, family.width.low) for name, family in space.families.items()
               for depth in _grid(family.depth)]
    for bound in bounds:
        size, (name, depth, width) = min((bound.measure(*corner), corner) for corner in corners)
        if size > bound.limit:
            return (f"no student in the space has at most {bound.describe(bound.limit)}: the smallest, "
                    f"{name} depth {depth} width {width}, has {bound.describe(size)}")
    return ("no student in the space meets every bound at once ("
            + ", ".join(f"at most {bound.describe(bound.limit)}" for bound in bounds)
            + "): each one alone is met by some student")


def _grid(param: IntParam) -> list[int]:
    """Every value an ``IntParam`` can take, in increasing order."""
    return list(range(param.low, param.high + 1, param.step))


def _fitting_run(param: IntParam, fitting: dict[int, int]) -> IntParam:
    """``param`` cut to the run of consecutive grid values, from the lowest that fits, that all fit.

    Sizes grow with depth, so the fitting depths are usually the lowest ones; a measured latency can break
    that (a deeper block of another kind, timing noise), and a depth past a gap is then left out rather than
    offered without a width."""
    grid = _grid(param)
    start = next(index for index, value in enumerate(grid) if value in fitting)
    end = start
    while end + 1 < len(grid) and grid[end + 1] in fitting:
        end += 1
    return replace(param, low=grid[start], high=grid[end])


def _widest_fitting(widths: list[int], fits: Callable[[int], bool]) -> int | None:
    """The largest of the increasing ``widths`` for which ``fits`` holds, given it holds for a prefix."""
    low, high, best = 0, len(widths) - 1, None
    while low <= high:
        middle = (low + high) // 2
        if fits(widths[middle]):
            best, low = widths[middle], middle + 1
        else:
            high = middle - 1
    return best


def suggest_config(trial: TrialLike, space: SearchSpace, teacher_family: str | None) -> dict[str, Any]:
    """Sample one trial configuration, define-by-run, from ``space``.

    ``teacher_family`` is the student family the teacher belongs to (or ``None`` for a teacher
    no student can inherit weights from); ``init_from_teacher`` is searched only for students
    of that family.
    """
    family = trial.suggest_categorical("family", list(space.families))
    bounds = space.families[family]
    depth = bounds.depth.suggest(trial, "depth")
    config: dict[str, Any] = {"family": family, "depth": depth, "width": bounds.width_at(depth).suggest(trial, "width")}
    if not space.distills:
        return {**config, "alpha": 0.0, **_training_params(trial, space)}
    config |= {
        "alpha": space.alpha.suggest(trial, "alpha"),
        "temperature": space.temperature.suggest(trial, "temperature"),
        "feature_loss": space.feature_loss.suggest(trial, "feature_loss"),
    }
    if config["feature_loss"] != "none":
        config["beta"] = space.beta.suggest(trial, "beta")
    config |= _training_params(trial, space)
    config["distill_interval"] = space.distill_interval.suggest(trial, "distill_interval")
    if teacher_family is not None and family == teacher_family:
        config["init_from_teacher"] = space.init_from_teacher.suggest(trial, "init_from_teacher")
    return config


def _training_params(trial: TrialLike, space: SearchSpace) -> dict[str, Any]:
    """The optimisation recipe every trial samples, with or without a teacher."""
    params = {
        "lr": space.lr.suggest(trial, "lr"),
        "weight_decay": space.weight_decay.suggest(trial, "weight_decay"),
        "batch_size": space.batch_size.suggest(trial, "batch_size"),
    }
    if space.augment is not None:
        params["augment"] = space.augment.suggest(trial, "augment")
    return params
