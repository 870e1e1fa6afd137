"""The search in words: how its trials ended, what they searched, the best configuration and the run's status.

``overview`` gives the header facts (what ran, on what, how the trials ended), ``searched_space`` the values
each parameter took, ``best_config`` the configuration to report, ``status_sentence`` a warning for an
unfinished run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports.figures import format_params
from reports.run import COMPLETE, FAILED, STOPPED, RunRecords, Trial, as_float
from reports.text._format import format_accuracy, format_duration, format_value
from spaces import PARAMETERS

# The search space's parameters in the order a person reads them (architecture, loss, optimiser), and
# what each means: both from the one table of searched parameters.
PARAM_ORDER = tuple(PARAMETERS)
PARAM_MEANING = {name: parameter.meaning for name, parameter in PARAMETERS.items()}


@dataclass(frozen=True)
class TrialCounts:
    """How the search's trials ended."""

    completed: int
    stopped_early: int
    failed: int
    other: int = 0

    @property
    def total(self) -> int:
        """All trials counted."""
        return self.completed + self.stopped_early + self.failed + self.other


def trial_counts(trials: Sequence[Trial], summary: Mapping[str, Any] | None = None) -> TrialCounts:
    """Counts from the summary when it has them (the run's own final word), else from the trials."""
    counted = Counter(t.state for t in trials)
    other = sum(n for state, n in counted.items() if state not in (COMPLETE, STOPPED, FAILED))
    from_summary = (summary or {}).get("trials")
    if isinstance(from_summary, Mapping) and all(
        isinstance(from_summary.get(k), int) for k in ("completed", "stopped_early", "failed")
    ):
        return TrialCounts(
            completed=from_summary["completed"],
            stopped_early=from_summary["stopped_early"],
            failed=from_summary["failed"],
            other=other,
        )
    return TrialCounts(counted[COMPLETE], counted[STOPPED], counted[FAILED], other)


@dataclass(frozen=True)
class BestConfig:
    """The configuration to report and where it came from."""

    config: dict[str, Any]
    source: str
    trial_id: str | None


def best_config(records: RunRecords) -> BestConfig | None:
    """The final stage's choice when the run got that far, else the best search trial so far."""
    summary = records.summary or {}
    final = summary.get("final") if isinstance(summary.get("final"), Mapping) else None
    winner = str(final["winner"]) if final and final.get("winner") is not None else None
    if isinstance(summary.get("best_config"), Mapping) and summary["best_config"]:
        source = (
            "chosen by the final stage (best validation mean over seeds)"
            if winner
            else "best configuration of the search"
        )
        return BestConfig(dict(summary["best_config"]), source, winner)
    ranked = [t for t in records.trials if t.best_val_accuracy is not None and t.state != FAILED]
    if not ranked:
        return None
    # Prefer trials that ran their full budget: a stopped trial's accuracy is from fewer epochs.
    best = max(ranked, key=lambda t: (t.state == COMPLETE, t.best_val_accuracy))
    return BestConfig(
        dict(best.config),
        f"best search trial so far: {best.label}, validation accuracy "
        f"{format_accuracy(best.best_val_accuracy)}, not re-trained over seeds",
        best.trial_id,
    )


def ordered_params(names: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Parameter names in reading order: the known ones first, then the rest alphabetically."""
    names = list(names)
    known = [p for p in PARAM_ORDER if p in names]
    return known + sorted(n for n in names if n not in PARAM_ORDER)


@dataclass(frozen=True)
class SearchedParam:
    """What one parameter ranged over across the trials."""

    name: str
    meaning: str
    values: str
    trials: int


def searched_space(trials: Sequence[Trial]) -> list[SearchedParam]:
    """Per parameter, the values tried: categories with counts, or the numeric range."""
    by_name: dict[str, list[Any]] = {}
    for t in trials:
        for name, value in t.config.items():
            by_name.setdefault(name, []).append(value)
    rows = []
    for name in ordered_params(by_name):
        values = by_name[name]
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        distinct = Counter(map(format_value, values))
        # Continuous values (lr, alpha, beta) read best as a range; a handful of choices as a tally.
        continuous = any(isinstance(v, float) and not v.is_integer() for v in numeric)
        if len(numeric) == len(values) and (continuous or len(distinct) > 8):
            desc = f"{format_value(min(numeric))} to {format_value(max(numeric))}"
        else:
            order = sorted(distinct, key=lambda v: _sort_key(v))
            desc = ", ".join(f"{v} ({distinct[v]})" for v in order)
        rows.append(SearchedParam(name, PARAM_MEANING.get(name, ""), desc, len(values)))
    return rows


@dataclass(frozen=True)
class Overview:
    """The header facts: what ran, on what, and how the trials ended."""

    run: str
    dataset: str
    teacher: str
    budget: str
    objective: str
    counts: TrialCounts
    finished: bool
    took: str | None


def overview(records: RunRecords) -> Overview:
    """Header facts from the summary, falling back to the spec for an interrupted run."""
    summary, spec = records.summary or {}, records.spec
    ds = summary.get("dataset") if isinstance(summary.get("dataset"), Mapping) else {}
    dataset = str(ds.get("name") or spec.get("dataset") or "unknown dataset")
    sizes = [f"{ds[k]} {k}" for k in ("train", "val", "test") if isinstance(ds.get(k), int)]
    if sizes:
        dataset += f" ({', '.join(sizes)} examples"
        dataset += f", {ds['classes']} classes)" if ds.get("classes") else ")"
    te = summary.get("teacher") if isinstance(summary.get("teacher"), Mapping) else {}
    teacher = str(te.get("arch") or spec.get("teacher") or "unknown teacher")
    details = []
    if te.get("params") is not None:
        details.append(f"{format_params(as_float(te.get('params')))} params")
    if as_float(te.get("test_accuracy")) is not None:
        details.append(f"{format_accuracy(as_float(te.get('test_accuracy')))} test accuracy")
    if details:
        teacher += f" ({', '.join(details)})"
    budget = summary.get("budget", spec.get("budget"))
    objective = str(summary.get("objective") or spec.get("objective") or "accuracy")
    timings = summary.get("timings") if isinstance(summary.get("timings"), Mapping) else {}
    took = None
    if as_float(timings.get("total_s")) is not None:
        took = format_duration(as_float(timings.get("total_s")))
        if as_float(timings.get("search_s")) is not None:
            took += f" (search: {format_duration(as_float(timings.get('search_s')))}"
            took += f" on {timings['slots']} parallel slots)" if timings.get("slots") else ")"
    return Overview(
        run=records.name,
        dataset=dataset,
        teacher=teacher,
        budget=f"{budget} trials" if budget is not None else "unknown budget",
        objective="validation accuracy and student size (Pareto)" if objective == "pareto" else "validation accuracy",
        counts=trial_counts(records.trials, records.summary),
        finished=bool(summary) and isinstance(summary.get("student"), Mapping),
        took=took,
    )


def status_sentence(records: RunRecords) -> str | None:
    """A warning when the run did not get to the end, naming what is missing."""
    if records.summary is None:
        return (
            "This run has no summary.json: it was interrupted or is still running. The report shows the "
            "search trials recorded so far; there are no test-set results yet."
        )
    if not isinstance(records.summary.get("student"), Mapping):
        return (
            "The final stage did not finish (no distilled student in summary.json): the report shows the "
            "search, but no test-set results for a student."
        )
    return None


def best_so_far(trials: Sequence[Trial]) -> Trial | None:
    """The trial with the highest validation accuracy, whatever its state."""
    ranked = [t for t in trials if t.best_val_accuracy is not None]
    return max(ranked, key=lambda t: t.best_val_accuracy) if ranked else None  # type: ignore[arg-type,return-value]


def _sort_key(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)
