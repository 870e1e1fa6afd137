"""The recipe phase (issue 21): the KD recipe searched again on the main search's best architecture.

The main search spreads its trials over architectures. On real data its winner is often the largest
student the size bound allows, trained once, at the warm-start point (the textbook recipe), while every
other trial went to smaller students: the recipe part of the search never explored the student the user
gets. So after the main search and before the final stage, a sub-run ``<run>/recipe/`` (a run folder of
the same layout, like the baseline's, resumed the same way after a kill) searches ``--recipe-budget``
trials on that one architecture (``spaces.recipe_space``): alpha, temperature, feature loss and beta, lr,
weight decay, batch size, distillation interval, and augmentation and ``init_from_teacher`` where the
space has them, for validation accuracy.

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

The final stage then chooses from the main search's and the recipe phase's records together
(``final.top_configs(..., distinct="arch")`` keeps the better configuration of the winning architecture);
a recipe trial that ran every epoch is its own seed run there, as a main one is (its checkpoint path is
absolute, under ``<run>/recipe/``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from runfolder import FAILED, RECIPE_FOLDER
from spaces import recipe_space
from tuning import final, resume
from tuning.gain_curve import arch_of, arch_text
from tuning.prepare import Prepared
from tuning.records import count_states
from tuning.spec import SearchSpec

Log = Callable[[str], None]


def told_trials(records: list[dict[str, Any]], arch: tuple[str, int, int]) -> list[tuple[dict[str, Any], float]]:
    """The main search's measured trials of ``arch``: (configuration, validation accuracy), in trial order."""
    return [(record["config"], record["val_accuracy"]) for record in records
            if record["state"] != FAILED and record["val_accuracy"] is not None and arch_of(record["config"]) == arch]


def search_recipe(spec: SearchSpec, prepared: Prepared, records: list[dict[str, Any]],
                  log: Log) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Run (or resume) the recipe phase on the best architecture of ``records`` (the main search's).

    Returns the sub-run's finished records and ``summary.json``'s ``recipe_search`` (``None`` and no records
    when ``--recipe-budget`` is 0, when ``--top-k 0`` skips the final stage that would use them, or when no
    main trial succeeded); ``winner_summary`` adds what the final stage chose.
    """
    best = final.top_configs(records, 1)
    if spec.recipe_trials == 0 or spec.top_k == 0 or not best:
        return [], None
    arch = arch_of(best[0]["config"])
    space = recipe_space(prepared.space, *arch)
    sub_spec = dataclasses.replace(spec, run_name=f"{spec.run_name}/{RECIPE_FOLDER}", budget=spec.recipe_trials,
                                   objective="accuracy", space=space, time_budget=None)
    sub_spec.run_dir.mkdir(parents=True, exist_ok=True)
    told = told_trials(records, arch)
    log(f"recipe search: {sub_spec.budget} trials of {arch_text(arch)}: the KD recipe searched on the winning "
        f"architecture, warm-started from its {len(told)} trials")
    from tuning.run import check_complete, search  # tuning.run imports this module

    recipe_records = search(sub_spec, dataclasses.replace(prepared, space=space), resume.decide(sub_spec), log,
                            told=told)
    check_complete(sub_spec, recipe_records)
    recipe_best = final.top_configs(recipe_records, 1)
    main_best = max(value for _, value in told)
    entry = {"arch": arch_text(arch), "budget": sub_spec.budget, "trials": len(recipe_records),
             "states": count_states(recipe_records), "told": len(told),
             "best_trial": recipe_best[0]["trial_id"] if recipe_best else None,
             "best_val_accuracy": recipe_best[0]["val_accuracy"] if recipe_best else None,
             "main_best_val_accuracy": main_best}
    found = f"{entry['best_val_accuracy']:.4f}" if recipe_best else "none (every trial failed)"
    log(f"recipe search: best val accuracy {found} against the main search's {main_best:.4f} on {arch_text(arch)}")
    return recipe_records, entry


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
