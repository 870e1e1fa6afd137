"""The final stage (docs/ARCHITECTURE.md, data flow step 6): re-check the best configurations, finetune,
compare, export.

1. The top-k configurations by validation accuracy (the best of each student architecture) are
   re-trained for the full epoch budget over several seeds, as Ray tasks; the winner is the best
   validation mean (never a test number).
2. The winner (chosen before finetuning) is finetuned on hard labels at a low lr, kept per seed only if
   validation does not drop.
3. The baseline is the same student architecture without the teacher, under its own best recipe (a
   small Ray Tune + Optuna search of lr, weight decay, batch size and augmentation), over the same
   seeds, with the same finetuning rule. The textbook arm is the winner's architecture with the textbook
   KD terms (alpha 0.9, T 4, no feature loss) on the baseline's lr, weight decay and batch size and the
   dataset's default augmentation, same seeds, same finetuning:
   ``search_gain`` (searched recipe minus textbook recipe) says what the recipe search bought.
4. Teacher, baseline and student are evaluated once on the held-out test split and measured; the
   gain is the mean paired per-seed difference with its 95 % interval and verdict (``runfolder.paired_gain``);
   ``search_gain`` likewise against the textbook arm.
5. The gain curve: the same comparison at 3-4 student sizes across the Pareto front, both arms on the
   baseline's tuned recipe, the distilled one adding the winner's KD terms (``tuning.gain_curve``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from runfolder import FINAL_FOLDER, mean_std, paired_gain, resolution_points
from runfolder import pareto_front as front_indices
from trainers import (
    Teacher,
    TensorSplits,
    count_parameters,
    export_model,
    measure,
)
from trainers.export import read_export_config
from trainers.measure import onnx_latency_ms
from tuning.bounds import student_measures
from tuning.gain_curve import KD_KEYS, Arch, arch_of, arch_text, curve_architectures, curve_recipes, textbook_recipe
from tuning.records import COMPLETE, FAILED
from tuning.seed_runs import SeedRun, SeedTasks, seed_model, seed_test_accuracy, training_key
from tuning.seed_store import SeedRunStore
from tuning.spec import SearchSpec

Log = Callable[[str], None]
MAX_PARETO_RECHECK = 8


def top_configs(records: list[dict[str, Any]], top_k: int, distinct: str = "config") -> list[dict[str, Any]]:
    """The ``top_k`` finished trials by validation accuracy, full-length trials first.

    ``distinct="config"`` skips repeated configurations; ``distinct="arch"`` keeps the best trial of each
    student architecture, so the final stage re-checks different students, not near-copies of one
    that a single lucky validation score put first (one validation image is worth a fraction of a point).
    """
    scored = [r for r in records if r["state"] != FAILED and r["val_accuracy"] is not None]
    scored.sort(key=lambda r: (r["state"] == COMPLETE, r["val_accuracy"]), reverse=True)
    chosen, seen = [], set()
    for record in scored:
        key = arch_of(record["config"]) if distinct == "arch" else repr(sorted(record["config"].items()))
        if key not in seen:
            seen.add(key)
            chosen.append(record)
    return chosen[:top_k]


def pareto_front(records: list[dict[str, Any]], size_measure: str = "params") -> list[dict[str, Any]]:
    """Trials no other trial beats on both validation accuracy (higher) and size (smaller ``size_measure``:
    params, flops or latency_ms), by size."""
    scored = [r for r in records if r["state"] != FAILED and r["val_accuracy"] is not None and r.get(size_measure)]
    return [scored[i] for i in front_indices([(r["val_accuracy"], r[size_measure]) for r in scored])]


EMPTY_RESULT = {"student": None, "baseline": None, "kd_gain": None, "kd_gain_ci95": None, "kd_verdict": None,
                "kd_gain_per_seed": None, "textbook": None, "search_gain": None, "search_gain_ci95": None,
                "search_verdict": None, "search_gain_per_seed": None, "gain_curve": None, "gain_curve_recipe": None,
                "final": None, "export": None}
BaselineSearch = Callable[[dict[str, Any]], dict[str, Any]]
RecipeSearch = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def run_final_stage(spec: SearchSpec, records: list[dict[str, Any]], data: TensorSplits, teacher: Teacher,
                    gpus_per_task: float, search_baseline: BaselineSearch, log: Log,
                    teacher_family: str | None = None, search_recipe: RecipeSearch | None = None) -> dict[str, Any]:
    """Everything ``summary.json`` says about the final stage, plus the exported ``best/`` folder.

    ``search_baseline(winner_config)`` runs the baseline's own recipe search for the winner's
    architecture and returns its best configuration (no teacher) under ``config``, with what the
    search did (shown in the report). ``search_recipe(winner_record)``, when given, searches the KD recipe
    of the re-check's winning architecture (``tuning.recipe_phase``) and returns its best trial record, which
    is re-checked over the same seeds; the better validation mean of the two is the winner.
    """
    started = time.perf_counter()
    candidates = top_configs(records, spec.top_k, distinct="arch")
    if not candidates:
        log("final stage: skipped (--top-k 0)" if spec.top_k == 0 else "final stage: no successful trial to re-check")
        return dict(EMPTY_RESULT)
    tasks = SeedTasks(spec, data, teacher, gpus_per_task, log, SeedRunStore(spec.run_dir / FINAL_FOLDER))
    pareto_members = (pareto_front(records, spec.size_measure)[:MAX_PARETO_RECHECK] if spec.objective == "pareto"
                      else [])
    log(f"final stage: re-training the top {len(candidates)} configurations over seeds {tasks.seeds}"
        + (f", and {len(pareto_members)} Pareto-set members with seed {spec.seed}" if pareto_members else ""))
    pending = {record["trial_id"]: tasks.launch_searched(record) for record in candidates}
    pareto_pending = [tasks.launch_searched(r, [spec.seed])[0] for r in pareto_members]
    if tasks.from_search:
        log(f"final stage: {len(tasks.from_search)} of these seed-{spec.seed} runs are the search's own trainings "
            "(their trials ran every epoch), not trained again")
    if tasks.kept:
        log(f"final stage: {tasks.kept} of these trainings were finished by an earlier attempt of this run: read back "
            f"from {spec.run_dir / FINAL_FOLDER}, not trained again")
    tasks.wait([reference for futures in pending.values() for reference in futures], "re-check trainings")
    runs: dict[str, list[SeedRun]] = {}
    for trial_id, futures in pending.items():
        runs[trial_id] = ray.get(futures)
        accuracies = [run.val_accuracy for run in runs[trial_id]]
        log(f"final stage: trial {trial_id} val accuracy {mean_std(accuracies)[0]:.4f} "
            f"± {mean_std(accuracies)[1]:.4f} over {len(tasks.seeds)} seeds")
    # The winner is chosen before finetuning: only the winner (and its baseline) is finetuned.
    winner_id = _best_mean(runs)
    phases = {"recheck_s": time.perf_counter() - started}
    if search_recipe is not None:
        recipe_best = search_recipe(next(r for r in candidates if r["trial_id"] == winner_id))
        phases["recipe_s"] = time.perf_counter() - started - phases["recheck_s"]
        if recipe_best is not None and recipe_best["trial_id"] not in runs:
            candidates.append(recipe_best)
            runs[recipe_best["trial_id"]] = tasks.get(tasks.launch_searched(recipe_best),
                                                      "trainings of the recipe search's best")
            accuracies = [run.val_accuracy for run in runs[recipe_best["trial_id"]]]
            log(f"final stage: the recipe search's best, trial {recipe_best['trial_id']}, val accuracy "
                f"{mean_std(accuracies)[0]:.4f} ± {mean_std(accuracies)[1]:.4f} over {len(tasks.seeds)} seeds")
            winner_id = _best_mean(runs)
        phases["recheck_s"] = time.perf_counter() - started - phases["recipe_s"]
    winner_config = runs[winner_id][0].config
    winner_pending = tasks.finetune(runs[winner_id])
    baseline_search = search_baseline(winner_config)
    phases["baseline_search_s"] = time.perf_counter() - started - sum(phases.values())
    baseline_config = baseline_search.pop("config")
    baseline_record = baseline_search.pop("record", None)
    log(f"final stage: training the baseline ({_recipe_text(baseline_config)}, no teacher) over seeds {tasks.seeds}")
    baseline_trained = tasks.launch_searched(baseline_record) if baseline_record else tasks.launch(baseline_config)
    baseline_pending = tasks.finetune(baseline_trained)
    textbook_config = textbook_recipe(winner_config, baseline_config)
    # A winner that is the textbook recipe on the baseline's settings would train the same students again.
    textbook_is_winner = _same_training(textbook_config, winner_config, data)
    if not textbook_is_winner:
        log(f"final stage: training the winner with the textbook KD recipe (alpha 0.9, T 4, no feature loss; "
            f"{_recipe_text(textbook_config)}) over seeds {tasks.seeds}")
    textbook_pending = winner_pending if textbook_is_winner else tasks.finetune(tasks.launch(textbook_config))
    winner_record = next(record for record in candidates if record["trial_id"] == winner_id)
    curve = _curve_plan(spec, records, winner_record)
    curve_configs = {arch: curve_recipes(winner_config, baseline_config, arch, teacher_family) for arch in curve}
    # The curve compares trained students (no finetuning). At the winner's size its baseline arm is the
    # baseline's own training runs, and its distilled arm is the textbook arm's when the winner's KD terms are
    # the textbook's: ``tasks`` launches each training once.
    curve_kd = {arch: tasks.launch(kd) for arch, (kd, _) in curve_configs.items()}
    curve_baseline = {arch: tasks.launch(base) for arch, (_, base) in curve_configs.items()}
    compared = [*(winner_pending if spec.finetune_epochs else []), *baseline_pending,
                *([] if textbook_is_winner else textbook_pending)]
    tasks.wait(compared, "seeds of the student, the baseline and the textbook arm")
    winner = ray.get(winner_pending) if spec.finetune_epochs else runs[winner_id]
    baseline = ray.get(baseline_pending)
    result = _compare(spec, data, teacher, winner, baseline)
    result["baseline"]["recipe"] = {key: baseline_config.get(key) for key in RECIPE_KEYS}
    result["baseline"]["search"] = baseline_search
    textbook = winner if textbook_is_winner else ray.get(textbook_pending)
    result |= _textbook_comparison(textbook, textbook_config, result["student"], data, textbook_is_winner)
    from tuning.rounds import run_rounds  # here: tuning.rounds imports this module (its export)

    result.update(run_rounds(spec, tasks, data, teacher, winner, result, log))
    if curve:
        log(f"final stage: measuring the KD gain at {len(curve)} student sizes")
        tasks.wait([reference for arms in (curve_kd, curve_baseline) for references in arms.values()
                    for reference in references], "gain-curve trainings")
        result["gain_curve"] = _gain_curve(curve, curve_kd, curve_baseline, data, teacher)
        result["gain_curve_recipe"] = {"recipe": result["baseline"]["recipe"],
                                       "kd_terms": {key: winner_config[key] for key in KD_KEYS if key in winner_config}}
    if pareto_pending:
        result["pareto"] = _recheck_pareto(pareto_members, tasks.get(pareto_pending, "Pareto-set trainings"), data,
                                           spec)
    # The final stage's winner (by validation mean over seeds) is the run's best configuration.
    result["best_config"] = winner_config
    result["best_trial"] = {key: winner_record[key] for key in ("trial_id", "val_accuracy", "params", "epochs")}
    result["final"] = {
        "candidates": [{"trial_id": trial_id, "config": runs[trial_id][0].config,
                        **_named_mean_std("val_accuracy", [r.val_accuracy for r in runs[trial_id]]),
                        "seeds": tasks.seeds} for trial_id in runs],
        "winner": winner_id,
        # Trials (of the search or the baseline's) whose own training is their configuration's seed --seed run.
        "from_search": list(tasks.from_search),
        # Training tasks the final stage launched, each training once (not its finetunings, not the rounds' own).
        "trainings": tasks.trainings,
        # Trainings and finetunings an earlier attempt of this run finished, read back from <run>/final/.
        "kept": tasks.kept,
        "finetune": {"epochs": spec.finetune_epochs, "kept_seeds": [r.seed for r in winner if r.finetuned]},
        "seconds": time.perf_counter() - started,
        "phases": {**phases, "compare_s": time.perf_counter() - started - sum(phases.values())},
    }
    return result


RECIPE_KEYS = ("lr", "weight_decay", "batch_size", "augment")


def _best_mean(runs: dict[str, list[SeedRun]]) -> str:
    """The trial whose seed runs have the best validation mean (ties: the first re-checked)."""
    return max(runs, key=lambda trial_id: mean_std([run.val_accuracy for run in runs[trial_id]])[0])


def _recipe_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{key} {config[key]:.3g}" if isinstance(config.get(key), float) else f"{key} {config.get(key)}"
                     for key in RECIPE_KEYS if key in config)


def _curve_plan(spec: SearchSpec, records: list[dict[str, Any]], winner: dict[str, Any]) -> list[Arch]:
    """The architectures of the gain curve (none with ``--gain-curve 0``); ``winner`` is its trial record."""
    if spec.gain_curve == 0:
        return []
    others = [r for r in records if r["state"] != FAILED and r["params"]]
    return curve_architectures(pareto_front(records), others, arch_of(winner["config"]), winner["params"],
                               spec.gain_curve)


def _gain_curve(curve: list[Arch], curve_kd: dict[Arch, list[Any]], curve_baseline: dict[Arch, list[Any]],
                data: TensorSplits, teacher: Teacher) -> list[dict[str, Any]]:
    """Per size: both models' per-seed test accuracies and the paired gain with its interval."""
    teacher_params = count_parameters(teacher.model)
    entries = []
    for arch in curve:
        kd_runs, baseline_runs = ray.get(curve_kd[arch]), ray.get(curve_baseline[arch])
        kd_tests = [seed_test_accuracy(run, data) for run in kd_runs]
        baseline_tests = [seed_test_accuracy(run, data) for run in baseline_runs]
        gain = paired_gain(kd_tests, baseline_tests)
        params = count_parameters(seed_model(kd_runs[0]))
        entries.append({
            "arch": arch_text(arch), "arch_config": kd_runs[0].arch, "params": params,
            "teacher_fraction": params / teacher_params, "kd_test_mean": statistics.fmean(kd_tests),
            "baseline_test_mean": statistics.fmean(baseline_tests), "gain": gain.gain, "gain_ci95": gain.interval(),
            "verdict": gain.verdict, "seeds": [run.seed for run in kd_runs], "kd_test_accuracies": kd_tests,
            "baseline_test_accuracies": baseline_tests,
        })
    return entries


def _compare(spec: SearchSpec, data: TensorSplits, teacher: Teacher, winner: list[SeedRun],
             baseline: list[SeedRun]) -> dict[str, Any]:
    shape = data.info.input_shape
    student_tests = [seed_test_accuracy(run, data) for run in winner]
    baseline_tests = [seed_test_accuracy(run, data) for run in baseline]
    best_run = max(winner, key=lambda run: run.val_accuracy)
    student_model = seed_model(best_run)
    # Latency on the runtime best/model.onnx deploys on, as --max-latency-ms bounds it; beside torch's own.
    student_cost = {**measure(student_model, shape).to_dict(),
                    "onnx_latency_ms": onnx_latency_ms(student_model, shape)}
    export_dir = export_run(spec, data, best_run)
    return {
        "teacher": measure(teacher.model, shape).to_dict(),  # its test accuracy is in the search summary
        "student": {**_model_entry(best_run.arch, student_cost, winner, student_tests), "export": str(export_dir)},
        "export": export_entry(export_dir),
        "baseline": _model_entry(baseline[0].arch, student_cost, baseline, baseline_tests),
        **paired_gain(student_tests, baseline_tests).summary_fields(),
        "test_resolution_points": resolution_points(len(data.test_y)),
    }


def export_run(spec: SearchSpec, data: TensorSplits, run: SeedRun, **metadata: Any) -> Path:
    """Export ``run``'s student to ``<run>/best/`` with what it needs to be used (input size, pixel scale,
    normalisation, class names) and where it came from (configuration, seed, validation accuracy, plus
    ``metadata``); returns the folder. ``model.onnx`` is checked against the student on the whole test
    split (in batches; a mismatch raises ``ExportParityError`` and writes nothing)."""
    export_dir = spec.run_dir / "best"
    export_model(seed_model(run), export_dir, data.info.input_shape, metadata={
        "config": run.config, "seed": run.seed, "dataset": data.info.name,
        "normalization": {"mean": list(data.mean), "std": list(data.std)},
        "class_names": list(data.info.class_names), "val_accuracy": run.val_accuracy, **metadata,
    }, mean=data.mean or None, std=data.std or None, pixel_max=data.pixel_max,
        class_names=data.info.class_names or None, check_images=data.test_x)
    return export_dir


def export_entry(export_dir: Path) -> dict[str, Any]:
    """``summary.json``'s ``export``: the folder, its ONNX file's opset, exporter and parity with the student on
    the test split (``max_abs_logit_diff``, ``top1_agreement``, ``images``), and the same for ``model.pt2``."""
    config = read_export_config(export_dir)
    parity = ("max_abs_logit_diff", "top1_agreement", "images")
    program = config.get("program") or {}
    return {"folder": str(export_dir),
            "onnx": {key: config["onnx"][key] for key in ("opset", "exporter", *parity)},
            "program": {key: program.get(key) for key in ("file", "exporter", "dynamic_batch", *parity)}}


def _same_training(config: dict[str, Any], other: dict[str, Any], data: TensorSplits) -> bool:
    """Whether two configurations train the same student (``tuning.seed_runs.training_key``)."""
    return training_key(config, 0, 1, data) == training_key(other, 0, 1, data)


def _textbook_comparison(textbook: list[SeedRun], config: dict[str, Any], student: dict[str, Any],
                         data: TensorSplits, is_winner: bool) -> dict[str, Any]:
    """``textbook`` (the winner's student on the textbook KD recipe) and ``search_gain``: the searched
    recipe minus the textbook one, paired by seed, in points."""
    tests = student["test_accuracies"] if is_winner else [seed_test_accuracy(run, data) for run in textbook]
    entry = {"recipe": {key: config.get(key) for key in (*RECIPE_KEYS, *KD_KEYS) if key in config},
             "seeds": [run.seed for run in textbook], "test_accuracies": tests,
             **_named_mean_std("test_accuracy", tests),
             "finetune_kept_seeds": [run.seed for run in textbook if run.finetuned],
             "same_as_winner": is_winner}
    return {"textbook": entry, **paired_gain(student["test_accuracies"], tests).summary_fields("search")}


def _model_entry(arch: dict[str, Any], cost: dict[str, Any], runs: list[SeedRun], tests: list[float]) -> dict[str, Any]:
    """One model's line of ``summary.json``: architecture, cost, per-seed test accuracies and their spread."""
    return {"arch": arch_text(arch_of(arch)), "arch_config": arch, **cost,
            "seeds": [run.seed for run in runs], "test_accuracies": tests, **_named_mean_std("test_accuracy", tests),
            "nodes": [run.node for run in runs]}


def _recheck_pareto(members: list[dict[str, Any]], runs: list[SeedRun], data: TensorSplits,
                    spec: SearchSpec) -> list[dict[str, Any]]:
    """The Pareto set with each member re-trained for the full budget and evaluated on test, and sized by every
    measure (FLOPs counted, latency timed with onnxruntime once per student, from the bounds' cache)."""
    checked = pareto_summary(members, spec.size_measure)
    measures, _ = student_measures(data.info.input_shape, data.info.num_classes, spec.latency_cache_dir)
    for entry, run in zip(checked, runs, strict=True):
        entry["recheck"] = {"seed": run.seed, "val_accuracy": run.val_accuracy,
                            "test_accuracy": seed_test_accuracy(run, data)}
        student = (run.config["family"], run.config["depth"], run.config["width"])
        entry |= {"flops": measures.flops(*student), "latency_ms": measures.latency_ms(*student)}
    return checked


def _named_mean_std(name: str, values: list[float]) -> dict[str, float]:
    mean, std = mean_std(values)
    return {f"{name}_mean": mean, f"{name}_std": std}


def pareto_summary(records: list[dict[str, Any]], size_measure: str = "params") -> list[dict[str, Any]]:
    """The Pareto set (accuracy against ``size_measure``) as ``summary.json`` lists it."""
    return [{"trial_id": r["trial_id"], "val_accuracy": r["val_accuracy"], "params": r["params"],
             **({size_measure: r[size_measure]} if size_measure != "params" else {}), "config": r["config"]}
            for r in pareto_front(records, size_measure)]
