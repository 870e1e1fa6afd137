"""The recipe phase (issue 21): the KD recipe searched again on the architecture the final stage chose.

The main search spreads its trials over architectures. On real data its winner is often the largest
student the size bound allows, trained once, at the warm-start point (the textbook recipe), while every
other trial went to smaller students: the recipe part of the search never explored the student the user
gets. So once the final stage's re-check has chosen the winning architecture (the best validation mean over
seeds of the top architectures), a sub-run ``<run>/recipe/`` (a run folder of the same layout, like the
baseline's, resumed the same way after a kill) searches ``--recipe-budget`` trials on that one architecture
(``spaces.recipe_space``): alpha, temperature, feature loss and beta, lr, weight decay, batch size,
distillation interval, and augmentation and ``init_from_teacher`` where the space has them, for validation
accuracy. Searching the re-check's choice rather than the main search's best single run makes the phase
explore the student the user gets: an earlier version searched the main search's best, and on MNIST-10k the
re-check then preferred another width (BENCHMARKS.md, issue 21).

Warm start: Ray's ``evaluated_rewards`` refuses a define-by-run space, so the main search's trials of that
architecture (configuration and validation accuracy) are told to the sub-run's Optuna study through
Optuna's ask-and-tell (``tuning.tuner.told_study``): the sampler starts from what was measured, and the
textbook point is not queued again (on this architecture the main search measured it, or had a reason
not to).

Scheduler: the user's ``--scheduler``, unchanged. The told values were measured under it (an ASHA trial
stopped early carries its last rung's accuracy), so the sub-run's trials are compared with them on equal
terms; and within one architecture ASHA's rungs compare recipes at equal epochs. KD's benefit often
shows late, which argues for ``--scheduler none``, but that is the user's trade of cost for fidelity,
for the whole run.

The final stage then re-trains the phase's best over the same seeds (a recipe trial that ran every epoch
is its own seed run there, as a main one is: its checkpoint path is absolute, under ``<run>/recipe/``), and
the winner is the better validation mean of the two.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runfolder import FAILED, RECIPE_FOLDER
from spaces import recipe_space
from tuning import final, resume
from tuning.gain_curve import Arch, arch_of, arch_text
from tuning.prepare import Prepared
from tuning.records import count_states
from tuning.spec import SearchSpec, UserError

Log = Callable[[str], None]


def told_trials(records: list[dict[str, Any]], arch: Arch) -> list[tuple[dict[str, Any], float]]:
    """The main search's measured trials of ``arch``: (configuration, validation accuracy), in trial order."""
    return [(record["config"], record["val_accuracy"]) for record in records
            if record["state"] != FAILED and record["val_accuracy"] is not None and arch_of(record["config"]) == arch]


def searched_arch(run_dir: Path) -> Arch | None:
    """The architecture an existing recipe sub-run in ``run_dir`` searched (from its ``spec.json``), if any."""
    try:
        families = resume.load_saved_spec(run_dir)["space"]["families"]
        (family, bounds), = families.items()
        return family, int(bounds["depth"]["low"]), int(bounds["width"]["low"])
    except (OSError, ValueError, KeyError, TypeError, UserError):  # none, or unreadable: resume.decide says so
        return None


class RecipePhase:
    """The recipe phase, run by the final stage once its re-check has chosen the winning architecture.

    Calling it with the re-check's winner (a trial record) runs, or resumes, the sub-run on that record's
    architecture and returns the sub-run's best record (``None`` when every trial failed). ``records`` and
    ``entry`` (``summary.json``'s ``recipe_search``; ``winner_summary`` adds what the final stage chose) are
    kept for the caller.
    """

    def __init__(self, spec: SearchSpec, prepared: Prepared, main_records: list[dict[str, Any]], log: Log) -> None:
        self.spec, self.prepared, self.main_records, self.log = spec, prepared, main_records, log
        self.records: list[dict[str, Any]] = []
        self.entry: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        """Off with ``--recipe-budget 0``, and with ``--top-k 0`` (no final stage, no re-check to follow)."""
        return self.spec.recipe_trials > 0 and self.spec.top_k > 0

    def __call__(self, winner: dict[str, Any]) -> dict[str, Any] | None:
        started = time.perf_counter()
        spec = self.spec
        sub_spec = dataclasses.replace(spec, run_name=f"{spec.run_name}/{RECIPE_FOLDER}", budget=spec.recipe_trials,
                                       objective="accuracy", time_budget=None)
        arch = arch_of(winner["config"])
        earlier = searched_arch(sub_spec.run_dir)
        if earlier is not None and earlier != arch:
            # A resumed run whose re-check chose otherwise this time (a GPU's nondeterminism): the sub-run that
            # ran is kept and resumed, never searched again on another architecture.
            self.log(f"recipe search: resuming its search of {arch_text(earlier)} (the re-check chose "
                     f"{arch_text(arch)} this time)")
            arch = earlier
        space = recipe_space(self.prepared.space, *arch)
        sub_spec = dataclasses.replace(sub_spec, space=space)
        sub_spec.run_dir.mkdir(parents=True, exist_ok=True)
        told = told_trials(self.main_records, arch)
        self.log(f"recipe search: {sub_spec.budget} trials of {arch_text(arch)}, the re-check's winning "
                 f"architecture: its KD recipe searched, warm-started from its {len(told)} trials")
        from tuning.runner import check_complete, search  # tuning.runner imports this module

        self.records = search(sub_spec, dataclasses.replace(self.prepared, space=space), resume.decide(sub_spec),
                              self.log, told=told)
        check_complete(sub_spec, self.records)
        recipe_best = final.top_configs(self.records, 1)
        main_best = max((value for _, value in told), default=None)
        self.entry = {"arch": arch_text(arch), "budget": sub_spec.budget, "trials": len(self.records),
                      "states": count_states(self.records), "told": len(told),
                      "best_trial": recipe_best[0]["trial_id"] if recipe_best else None,
                      "best_val_accuracy": recipe_best[0]["val_accuracy"] if recipe_best else None,
                      "main_best_val_accuracy": main_best, "seconds": time.perf_counter() - started}
        found = f"{self.entry['best_val_accuracy']:.4f}" if recipe_best else "none (every trial failed)"
        against = f" against the main search's {main_best:.4f}" if main_best is not None else ""
        self.log(f"recipe search: best val accuracy {found}{against} on {arch_text(arch)}")
        return recipe_best[0] if recipe_best else None


def winner_summary(entry: dict[str, Any], records: list[dict[str, Any]], recipe_records: list[dict[str, Any]],
                   result: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with what the final stage (its ``result``) made of it: whether its winner came from the recipe
    phase (``chosen``), and how many trials, main and recipe, trained the winner's architecture (``winner_arch_trials``,
    ``winner_arch_share`` of all of them)."""
    winner_id, config = (result.get("final") or {}).get("winner"), result.get("best_config")
    if winner_id is None or config is None:
        return {**entry, "chosen": False, "winner_arch_trials": None, "winner_arch_share": None}
    every = [*records, *recipe_records]
    on_arch = sum(arch_of(record["config"]) == arch_of(config) for record in every)
    return {**entry, "chosen": any(record["trial_id"] == winner_id for record in recipe_records),
            "winner_arch_trials": on_arch, "winner_arch_share": on_arch / len(every)}
