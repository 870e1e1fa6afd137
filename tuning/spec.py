"""The validated, frozen description of one search: every flag of ``search.py`` after checking."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaces import PRESETS, FamilyBounds, SearchSpace, SpaceError, apply_overrides, family_bounds, load_space_file
from trainers.models import student_family_bounds
from trainers.teacher_sources import TeacherSource, source_kind
from tuning.bounds import NO_PARAMS_BOUND, BoundError, check_bound_flags, pareto_measure, parse_max_params
from tuning.teacher_flags import TeacherFlagError, check_teacher_flags

SAMPLERS = ("tpe", "random", "cmaes", "nsga2")
# Samplers Optuna builds on a package of their own: refused before any work when it is not installed.
SAMPLER_PACKAGES = {"cmaes": "cmaes"}
SCHEDULERS = ("asha", "none")
OBJECTIVES = ("accuracy", "pareto")
DEFAULT_TEACHER = "resnet-large"
# Measured per dataset (60 epochs, ±1 px shifts, 3 seeds): on digits cnn-large reaches 0.992-0.994 validation
# accuracy in about 25 s, resnet-large 0.992 in about 50 s. On 28x28 greyscale images cnn-large trains 2x
# faster than resnet-large (1,032 against 514 images/s on one CPU thread, stride-2 stems), so the MNIST
# family and image folders default to it too; colour datasets keep resnet-large.
DATASET_TEACHERS = {name: "cnn-large" for name in ("digits", "mnist", "fashion-mnist", "kmnist", "imagefolder", "csv")}
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# What defines a run: the same run name with a different value here is another search, not a resume.
IDENTITY_FIELDS = ("dataset", "data_dir", "teacher", "teacher_checkpoint", "teacher_weights", "teacher_input_size",
                   "teacher_mean", "teacher_std", "teacher_preprocessing", "teacher_features", "teacher_epochs",
                   "epochs", "seed", "sampler", "scheduler", "objective", "space", "max_train_samples", "max_params",
                   "max_flops", "max_latency_ms", "augment", "image_size")
# Students of at most 2 % of the teacher (50x smaller): the compression people distil for, and the sizes where a
# teacher's signal pays most (a student near the teacher's capacity learns the labels about as well alone).
# The default applies when no other bound is given: a --max-flops or --max-latency-ms bound replaces it.
DEFAULT_MAX_PARAMS = "2%"
AUGMENTATIONS = ("auto", "none", "crop", "crop+flip")
# --rounds auto: distil again while each round beats the one before ("helps"), at most this many rounds in all
# (round 1 is the final stage's distilled student), so an auto run costs at most two extra rounds of trainings.
AUTO_ROUNDS_CAP = 3


class UserError(Exception):
    """Bad input: ``search.py`` prints the message on one line and exits with status 2."""


def registered_families(all_families: bool = False) -> dict[str, FamilyBounds]:
    """The student families of the model registry (``@register_student``) with their default bounds: those
    the default space searches; with ``all_families``, every registered one (what a ``--space`` file may
    name, e.g. the torchvision families registered with ``default_search=False``)."""
    return {name: family_bounds(depth, width)
            for name, (depth, width) in student_family_bounds(all_families=all_families).items()}


def preset_space(name: str) -> SearchSpace:
    """The preset space ``name`` (``default`` or ``smoke``) over the registered student families."""
    return PRESETS[name](registered_families())


@dataclass(frozen=True)
class SearchSpec:
    """One search, fully specified. Build it with ``build_spec``, which validates every field."""

    budget: int = 50
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    teacher: str = DEFAULT_TEACHER
    teacher_checkpoint: str | None = None
    # A user's teacher: its weights, whether a pickled checkpoint may run code, and how it sees images.
    teacher_weights: str | None = None
    trust_checkpoint: bool = False
    teacher_input_size: int | None = None
    teacher_mean: tuple[float, ...] | None = None
    teacher_std: tuple[float, ...] | None = None
    teacher_preprocessing: str = "dataset"
    teacher_features: tuple[str, ...] = ()
    epochs: int = 15
    run_name: str = ""
    results_dir: str = "results"
    seed: int = 0
    sampler: str = "tpe"
    scheduler: str = "asha"
    objective: str = "accuracy"
    space_file: str | None = None
    # --families: the student families to search (None: the default space's); "all" is every registered one.
    families: tuple[str, ...] | None = None
    space: SearchSpace = field(default_factory=lambda: preset_space("default"))
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    address: str | None = None
    # Join an --address cluster without token authentication. Not part of the run's identity: a resume may
    # add or drop it, like --trust-checkpoint.
    allow_insecure_cluster: bool = False
    storage_path: str | None = None
    time_budget: float | None = None
    smoke: bool = False
    top_k: int = 3
    final_seeds: int = 5
    finetune_epochs: int = 5
    max_train_samples: int | None = None
    teacher_epochs: int = 60
    max_failures: int = 2
    max_params: str = DEFAULT_MAX_PARAMS  # a count, a percentage of the teacher, or "none"
    max_flops: int | None = None
    max_latency_ms: float | None = None
    augment: str = "auto"
    image_size: int | None = None
    cache_dir: str | None = None
    teacher_cache_gb: float | None = None
    baseline_budget: int | None = None
    # --recipe-budget: trials of the recipe phase on the main search's best architecture (``tuning.recipe_phase``).
    recipe_budget: int | None = None
    gain_curve: int = 3
    # --rounds: the most rounds of distillation, round 1 included (``tuning.rounds``); with ``rounds_auto`` a
    # round runs only while the one before it helped, with an explicit N every round up to N runs.
    rounds: int = AUTO_ROUNDS_CAP
    rounds_auto: bool = True

    @property
    def baseline_trials(self) -> int:
        """Trials of the baseline's own search: ``--baseline-budget``, else max(8, budget / 5)."""
        return self.baseline_budget if self.baseline_budget is not None else max(8, self.budget // 5)

    @property
    def recipe_trials(self) -> int:
        """Trials of the recipe phase: ``--recipe-budget``, else max(4, budget / 4 rounded up); 0 skips it.

        A quarter of the budget gives the winning architecture at least a fifth of all trials (main and
        recipe): r / (budget + r) >= 1/5 when r >= budget / 4, before counting its main-search trials."""
        return self.recipe_budget if self.recipe_budget is not None else max(4, -(-self.budget // 4))

    def max_params_for(self, teacher_params: int) -> int | None:
        """``--max-params`` as a parameter count (a percentage is of ``teacher_params``); ``None`` for none."""
        if self.max_params == NO_PARAMS_BOUND:
            return None
        number, percent = parse_max_params(self.max_params)
        return int(teacher_params * number / 100) if percent else int(number)

    def size_limits(self, teacher_params: int) -> dict[str, float | None]:
        """Every size bound as a number: ``max_params``, ``max_flops``, ``max_latency_ms`` (``None``: none)."""
        return {"max_params": self.max_params_for(teacher_params), "max_flops": self.max_flops,
                "max_latency_ms": self.max_latency_ms}

    @property
    def size_measure(self) -> str:
        """The size ``--objective pareto`` trades accuracy against: ``latency_ms`` with --max-latency-ms, else
        ``flops`` with --max-flops, else ``params``."""
        return pareto_measure({"max_flops": self.max_flops, "max_latency_ms": self.max_latency_ms})

    @property
    def run_dir(self) -> Path:
        """``<results-dir>/<run-name>``, absolute (Ray needs absolute storage paths)."""
        return Path(self.results_dir).absolute() / self.run_name

    @property
    def tune_storage(self) -> Path:
        """Where Ray Tune keeps the experiment: ``--storage-path`` (shared storage) or the run folder."""
        if self.storage_path:
            return Path(self.storage_path).absolute() / self.run_name
        return self.run_dir

    @property
    def foreign_teacher(self) -> bool:
        """Whether the teacher is the user's (a checkpoint, a library or factory model), not trained here."""
        return self.teacher_checkpoint is not None or source_kind(self.teacher) != "registered"

    def teacher_source(self) -> TeacherSource:
        """The ``--teacher*`` flags as the loader of a user's teacher takes them."""
        return TeacherSource(
            teacher=None if self.teacher_checkpoint else self.teacher, weights=self.teacher_weights,
            checkpoint=self.teacher_checkpoint, trust_checkpoint=self.trust_checkpoint,
            input_size=self.teacher_input_size, mean=self.teacher_mean, std=self.teacher_std,
            preprocessing=self.teacher_preprocessing, features=self.teacher_features)

    @property
    def data_cache_dir(self) -> Path:
        """Where decoded datasets are cached (``--cache-dir``, default ``<results-dir>/cache``)."""
        return Path(self.cache_dir).absolute() if self.cache_dir else Path(self.results_dir).absolute() / "cache"

    @property
    def latency_cache_dir(self) -> Path:
        """Where measured student latencies are kept, one file per student and machine."""
        return self.data_cache_dir / "latency"

    @property
    def teacher_cache_dir(self) -> Path:
        return Path(self.results_dir).absolute() / "teachers"

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a rerun with this run name to resume it."""
        values = self.to_dict()
        return {name: values[name] for name in IDENTITY_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (``spec.json``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["space"] = self.space.to_dict()
        return values


def build_spec(**flags: Any) -> SearchSpec:
    """Validate raw flag values into a ``SearchSpec``; raises ``UserError`` with a one-line message."""
    flags = {name: value for name, value in flags.items() if value is not None}
    smoke = bool(flags.get("smoke", False))
    if smoke:
        flags.setdefault("budget", 4)
        flags.setdefault("epochs", 3)
        flags.setdefault("top_k", 1)
        flags.setdefault("final_seeds", 1)
        flags.setdefault("finetune_epochs", 1)
        flags.setdefault("scheduler", "none")
        flags.setdefault("teacher_epochs", 5)
        flags.setdefault("baseline_budget", 2)
        flags.setdefault("recipe_budget", 0)
        flags.setdefault("gain_curve", 0)
        flags.setdefault("rounds", 1)
    flags["rounds"], flags["rounds_auto"] = parse_rounds(flags.get("rounds", "auto"))
    _check_int("budget", flags.get("budget", 50), "--budget", minimum=1)
    _check_int("epochs", flags.get("epochs", 15), "--epochs", minimum=1)
    _check_int("seed", flags.get("seed", 0), "--seed", minimum=0)
    for name, flag in (("final_seeds", "--final-seeds"), ("teacher_epochs", "--teacher-epochs"),
                       ("max_concurrent", "--max-concurrent"), ("max_train_samples", "--max-train-samples"),
                       ("image_size", "--image-size")):
        if name in flags:
            _check_int(name, flags[name], flag, minimum=1)
    for name, flag in (("finetune_epochs", "--finetune-epochs"), ("top_k", "--top-k"),
                       ("max_failures", "--max-failures"), ("gain_curve", "--gain-curve"),
                       ("baseline_budget", "--baseline-budget"), ("recipe_budget", "--recipe-budget")):
        if name in flags:
            _check_int(name, flags[name], flag, minimum=0)
    _check_choice(flags.get("sampler", "tpe"), SAMPLERS, "--sampler")
    _check_sampler_package(flags.get("sampler", "tpe"))
    _check_choice(flags.get("scheduler", "asha"), SCHEDULERS, "--scheduler")
    _check_choice(flags.get("objective", "accuracy"), OBJECTIVES, "--objective")
    _check_choice(flags.get("augment", "auto"), AUGMENTATIONS, "--augment")
    if flags.get("gain_curve", 3) == 1:
        raise UserError("--gain-curve needs at least 2 student sizes to draw a curve; give 2 or more, or 0 to skip it")
    try:
        check_bound_flags(flags)
    except BoundError as error:
        raise UserError(str(error)) from None
    if flags.get("objective") == "pareto" and flags.get("sampler") == "cmaes":
        raise UserError("--sampler cmaes optimises one objective only; use --sampler nsga2 or tpe with "
                        "--objective pareto")
    _check_resources(flags)
    if flags.get("allow_insecure_cluster") and not flags.get("address"):
        raise UserError("--allow-insecure-cluster applies to a cluster joined with --address only; drop it")
    if "time_budget" in flags and not (flags["time_budget"] > 0 and math.isfinite(flags["time_budget"])):
        raise UserError(f"--time-budget must be a positive number of seconds, got {flags['time_budget']}")
    flags["dataset"] = str(flags.get("dataset", "digits")).lower().replace("_", "-")
    try:
        check_teacher_flags(flags)
    except TeacherFlagError as error:
        raise UserError(str(error)) from None
    flags.setdefault("teacher", DATASET_TEACHERS.get(flags["dataset"], DEFAULT_TEACHER))
    flags["run_name"] = _run_name(flags.get("run_name"), flags["dataset"])
    if "families" in flags:
        flags["families"] = _family_names(flags["families"])
    flags["space"] = _space(flags.get("space_file"), smoke, flags.get("families"))
    _check_writable(Path(flags.get("results_dir", "results")), "--results-dir")
    if "storage_path" in flags:
        _check_writable(Path(flags["storage_path"]), "--storage-path")
    cache_gb = flags.get("teacher_cache_gb", 0.0)
    if not (cache_gb >= 0 and math.isfinite(cache_gb)):
        raise UserError(f"--teacher-cache-gb must be a number of gigabytes, 0 or more, got {cache_gb}")
    if "cache_dir" in flags:
        _check_writable(Path(flags["cache_dir"]), "--cache-dir")
    for path_flag in ("data_dir", "teacher_checkpoint", "teacher_weights", "space_file", "results_dir", "storage_path",
                      "cache_dir"):
        if path_flag in flags:
            flags[path_flag] = str(Path(flags[path_flag]).expanduser())
    return SearchSpec(**flags)


def parse_rounds(value: Any) -> tuple[int, bool]:
    """``--rounds`` as (the most rounds, round 1 included; whether ``auto``): ``auto`` or a whole number >= 1
    (given as text on the command line, as an int from Python); ``UserError`` for anything else."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return AUTO_ROUNDS_CAP, True
    number = value.strip() if isinstance(value, str) else value
    if isinstance(number, str) and number.isdigit():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise UserError(f"--rounds must be auto or a whole number of rounds, 1 or more (1: no extra round), "
                        f"got {value!r}")
    return number, False


def _check_sampler_package(sampler: str) -> None:
    package = SAMPLER_PACKAGES.get(sampler)
    if package is not None and importlib.util.find_spec(package) is None:
        raise UserError(f"--sampler {sampler} needs the '{package}' package, which is not installed; "
                        f"run 'pip install {package}' or choose another --sampler")


def _check_int(name: str, value: Any, flag: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{flag} must be an integer, got {value!r}")
    if value < minimum:
        raise UserError(f"{flag} must be at least {minimum}, got {value}")


def _check_choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"unknown {flag} '{value}'{hint}; choose from {', '.join(choices)}")


def _check_resources(flags: dict[str, Any]) -> None:
    cpus = flags.get("cpus_per_trial", 1.0)
    if not (cpus > 0 and math.isfinite(cpus)):
        raise UserError(f"--cpus-per-trial must be a positive number, got {cpus}")
    gpus = flags.get("gpus_per_trial")
    if gpus is not None and not (gpus >= 0 and math.isfinite(gpus)):
        raise UserError(f"--gpus-per-trial must be 0 or more (fractions share a GPU), got {gpus}")
    if gpus is not None and gpus > 1 and gpus != int(gpus):
        raise UserError(f"--gpus-per-trial above 1 must be a whole number, got {gpus}")


def _run_name(name: str | None, dataset: str) -> str:
    if name is None:
        return f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not _RUN_NAME.match(name):
        raise UserError(f"--run-name '{name}' is not a plain folder name; use letters, digits, '.', '_' or '-'")
    return name


def _family_names(value: Any) -> tuple[str, ...]:
    """``--families``: names separated by commas (or a sequence), ``all`` for every registered family."""
    names = tuple(name.strip() for name in value.split(",")) if isinstance(value, str) else tuple(value)
    if not names or not all(names):
        raise UserError(f"--families must be student family names separated by commas, e.g. "
                        f"mobilenet_v3_small,resnet_basic, or all; got {value!r}")
    return tuple(registered_families(all_families=True)) if names == ("all",) else names


def _space(space_file: str | None, smoke: bool, families: tuple[str, ...] | None = None) -> SearchSpace:
    """The preset, narrowed to ``--families`` (each with its default bounds), then the ``--space`` file on top."""
    base = preset_space("smoke" if smoke else "default")
    every_family = registered_families(all_families=True)
    try:
        if families is not None:
            base = apply_overrides(base, {"families": list(families)}, every_family)
        return base if space_file is None else load_space_file(space_file, base, every_family)
    except SpaceError as error:
        flag = "--families" if space_file is None else f"--families or --space {space_file}"
        raise UserError(str(error) if space_file is not None and families is None else f"{flag}: {error}") from None


def _check_writable(folder: Path, flag: str) -> None:
    """The nearest existing ancestor must be a writable folder: we create the rest ourselves."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {folder}: {existing} is a file, not a folder; choose another path")
    try:  # a real probe: permission bits alone say nothing for root or read-only mounts
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"{flag} {folder} cannot be written ({existing}: {error.strerror}); "
                        "choose a writable path") from None
