"""The recipe phase: the KD recipe searched again, in ``<run>/recipe/``, on the architecture the final stage's
re-check chose; its best is re-checked over the same seeds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import search
from spaces import recipe_space
from tests.tuning.conftest import SMALL, small_search
from trainers import load_dataset
from tuning import build_spec, run
from tuning.final import top_configs
from tuning.gain_curve import arch_of
from tuning.recipe_phase import searched_arch
from tuning.runner import RunOutcome
from tuning.seed_runs import searched_run

RECIPE = {"budget": 4, "recipe_budget": 2, "top_k": 2, "final_seeds": 2, "max_params": "4000"}


def _records(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "trials.json").read_text())


@pytest.fixture(scope="module")
def recipe_run(ray_cluster: None, teacher_cache: Path, teacher_checkpoint: str) -> RunOutcome:
    return small_search(teacher_cache, "recipe", teacher_checkpoint=teacher_checkpoint, **RECIPE)


def _summary(run: RunOutcome) -> dict:
    return json.loads((run.run_dir / "summary.json").read_text())


def _rechecked_choice(summary: dict, main: list[dict]) -> dict:
    """The main-search candidate with the best validation mean over the seeds (the first of equals)."""
    main_ids = {record["trial_id"] for record in main}
    rechecked = [c for c in summary["final"]["candidates"] if c["trial_id"] in main_ids]
    assert len(rechecked) == 2  # --top-k 2: two architectures re-checked
    return max(rechecked, key=lambda candidate: candidate["val_accuracy_mean"])


def test_the_recipe_phase_searches_the_architecture_the_recheck_chose(recipe_run: RunOutcome) -> None:
    main, recipe = _records(recipe_run.run_dir), _records(recipe_run.run_dir / "recipe")
    assert len(main) == 4 and len(recipe) == 2
    best = arch_of(_rechecked_choice(_summary(recipe_run), main)["config"])
    assert {arch_of(record["config"]) for record in recipe} == {best}
    kd_keys = ("alpha", "temperature", "feature_loss", "lr", "weight_decay", "batch_size", "distill_interval")
    recipes = [tuple(record["config"][key] for key in kd_keys) for record in recipe]
    measured = [tuple(record["config"][key] for key in kd_keys) for record in main if arch_of(record["config"]) == best]
    assert len(set(recipes)) == 2 and not set(recipes) & set(measured)  # no measured point is repeated


def test_the_summary_says_what_the_recipe_phase_did_and_the_final_stage_chose(recipe_run: RunOutcome) -> None:
    summary = _summary(recipe_run)
    main, recipe = _records(recipe_run.run_dir), _records(recipe_run.run_dir / "recipe")
    entry = summary["recipe_search"]
    choice = _rechecked_choice(summary, main)
    family, depth, width = arch_of(choice["config"])
    assert entry["arch"] == f"{family} depth {depth} width {width}"
    assert (entry["budget"], entry["trials"], entry["states"]["failed"]) == (2, 2, 0)
    on_best = [r for r in main if arch_of(r["config"]) == arch_of(choice["config"])]
    assert entry["told"] == len(on_best)
    assert entry["main_best_val_accuracy"] == max(r["val_accuracy"] for r in on_best)
    recipe_best = top_configs(recipe, 1)[0]
    assert (entry["best_trial"], entry["best_val_accuracy"]) == (recipe_best["trial_id"], recipe_best["val_accuracy"])
    # the recipe phase's best was re-checked over the same seeds; the winner is the better of it and the choice
    assert summary["student"] is not None
    candidates = {c["trial_id"]: c for c in summary["final"]["candidates"]}
    assert recipe_best["trial_id"] in candidates and candidates[recipe_best["trial_id"]]["seeds"] == [0, 1]
    winner = summary["final"]["winner"]
    duel = [candidates[choice["trial_id"]], candidates[recipe_best["trial_id"]]]
    assert winner == max(duel, key=lambda candidate: candidate["val_accuracy_mean"])["trial_id"]
    assert entry["chosen"] is (winner == recipe_best["trial_id"])
    assert entry["winner_arch_trials"] == len(on_best) + 2
    assert entry["winner_arch_share"] == pytest.approx((len(on_best) + 2) / 6)
    # the winner's seed-0 run is its own trial's training, wherever that trial's folder is
    assert winner in summary["final"]["from_search"]
    assert summary["timings"]["recipe_s"] > 0 and summary["final"]["phases"]["recipe_s"] > 0
    assert summary["pareto"] and all(p["trial_id"] in {r["trial_id"] for r in main} for p in summary["pareto"])
    assert (recipe_run.run_dir / "report.html").exists()
    assert f"recipe search: 2 trials of {entry['arch']}" in search.final_table(summary)
    assert f"**Recipe search:** 2 trials of {entry['arch']}" in (recipe_run.run_dir / "summary.md").read_text()


def test_a_rerun_resumes_the_recipe_phase_without_new_trials(recipe_run: RunOutcome, teacher_cache: Path,
                                                              teacher_checkpoint: str) -> None:
    before = (_records(recipe_run.run_dir), _records(recipe_run.run_dir / "recipe"))
    messages: list[str] = []
    spec = build_spec(results_dir=str(teacher_cache), run_name="recipe", teacher_checkpoint=teacher_checkpoint,
                      **{**SMALL, **RECIPE})
    outcome = run(spec, log=messages.append)
    after = (_records(outcome.run_dir), _records(outcome.run_dir / "recipe"))
    assert [[r["trial_id"] for r in records] for records in after] == [[r["trial_id"] for r in records]
                                                                        for records in before]
    assert not any(message.startswith("search: ") and "trials, up to" in message for message in messages)
    assert outcome.summary["recipe_search"]["trials"] == 2


def test_a_recipe_trial_is_its_own_seed_run_in_the_final_stage(recipe_run: RunOutcome, teacher_cache: Path,
                                                               teacher_checkpoint: str) -> None:
    """Its checkpoint lies under ``<run>/recipe/``: the final stage reuses it as it does a main trial's."""
    spec = build_spec(results_dir=str(teacher_cache), run_name="recipe", teacher_checkpoint=teacher_checkpoint,
                      **{**SMALL, **RECIPE})
    data = load_dataset("digits", max_train_samples=SMALL["max_train_samples"])
    for record in _records(recipe_run.run_dir / "recipe"):
        assert Path(record["checkpoint"]).is_relative_to(recipe_run.run_dir / "recipe")
        seed_run = searched_run(record, spec, data)
        assert seed_run is not None and seed_run.config == record["config"] and seed_run.seed == spec.seed


def test_a_resumed_recipe_phase_keeps_the_architecture_it_searched(tmp_path: Path) -> None:
    """What the sub-run searched is read back from its spec.json, so a rerun whose re-check chose otherwise (a
    GPU's nondeterminism) resumes it instead of refusing it or searching another architecture."""
    spec = build_spec(results_dir=str(tmp_path), run_name="run", budget=2)
    spec = dataclasses.replace(spec, run_name="run/recipe", space=recipe_space(spec.space, "cnn", 2, 5))
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / "spec.json").write_text(json.dumps(spec.to_dict()))
    assert searched_arch(spec.run_dir) == ("cnn", 2, 5)
    assert searched_arch(tmp_path / "nothing") is None
    (spec.run_dir / "spec.json").write_text("{")
    assert searched_arch(spec.run_dir) is None
