"""The real search stack on tiny budgets: Ray Tune trials sampled by Optuna, records, journal, summary."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import onnxruntime
import optuna
import pytest
import torch

import search
from runfolder import SCHEMA_VERSION
from tests.tuning.conftest import SMALL, small_search
from tests.tuning.faults import FAULT_WEIGHT_DECAYS, calls
from trainers import Teacher, TensorSplits, count_parameters, load_dataset, load_exported, load_program
from trainers.export import ONNX_OPSET
from tuning import SearchSpec, build_spec
from tuning.gain_curve import arch_of, curve_recipes
from tuning.journal import open_study
from tuning.prepare import bounded_space, load_data, obtain_teacher, shared_teacher, without_idle_interval
from tuning.runner import RunOutcome
from tuning.seed_runs import SeedTasks, train_seed
from tuning.trainable import STATE_FILE

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _records(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "trials.json").read_text())


@pytest.fixture(scope="module")
def basic_run(ray_cluster: None, teacher_cache: Path, teacher_checkpoint: str) -> RunOutcome:
    """One 5-trial, 3-epoch search shared by the tests that only read its results."""
    return small_search(teacher_cache, "basic", budget=5, epochs=3, teacher_checkpoint=teacher_checkpoint)


def test_budget_is_honoured_exactly(basic_run: RunOutcome) -> None:
    outcome = basic_run
    records = _records(outcome.run_dir)
    assert len(records) == 5
    assert len({r["trial_id"] for r in records}) == 5
    assert all(r["state"] in ("COMPLETE", "STOPPED", "FAILED") for r in records)
    summary = outcome.summary
    assert sum(summary["trials"].values()) == 5
    assert summary["budget"] == 5
    study = open_study(outcome.run_dir / "optuna.journal", "accuracy")
    assert len(study.trials) == 5
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    csv_lines = (outcome.run_dir / "trials.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 5
    assert csv_lines[0].startswith("trial_id,number,state,epochs,val_accuracy")


def test_trials_report_every_epoch(basic_run: RunOutcome) -> None:
    for record in _records(basic_run.run_dir):
        assert [point["epoch"] for point in record["curve"]] == [1, 2, 3]
        assert record["state"] == "COMPLETE"  # the scheduler is off in these small searches
        assert 0.0 <= record["val_accuracy"] <= 1.0
        assert record["params"] > 0 and record["busy_s"] > 0


def _configs(run_dir: Path) -> list[dict]:
    return [r["config"] for r in sorted(_records(run_dir), key=lambda r: r["number"])]


def test_same_seed_samples_same_configs_two_at_a_time(teacher_cache: Path, teacher_checkpoint: str) -> None:
    """Two trials at a time may finish in either order; the set of configurations sampled is the same."""
    flags = {"budget": 4, "sampler": "random", "max_concurrent": 2, "teacher_checkpoint": teacher_checkpoint,
             "top_k": 0}
    first = small_search(teacher_cache, "seed-a-random", **flags)
    again = small_search(teacher_cache, "seed-b-random", **flags)
    assert sorted(map(repr, _configs(first.run_dir))) == sorted(map(repr, _configs(again.run_dir)))
    other = small_search(teacher_cache, "seed-c-random", **{**flags, "seed": 1})
    assert sorted(map(repr, _configs(first.run_dir))) != sorted(map(repr, _configs(other.run_dir)))


def test_pareto_objective_keeps_a_pareto_set(teacher_cache: Path, teacher_checkpoint: str) -> None:
    """Under a latency bound, --objective pareto trades accuracy against latency: each trial's student is timed
    (onnxruntime, batch 1), the front is on that axis, and the final stage sizes each member by every measure.
    A torchvision family (--families) trains, re-trains and exports through the same path."""
    outcome = small_search(teacher_cache, "pareto", budget=6, objective="pareto", sampler="nsga2",
                           teacher_checkpoint=teacher_checkpoint, max_latency_ms=5.0,
                           families="cnn,mobilenet_v3_small")
    pareto = outcome.summary["pareto"]
    assert pareto
    scored = [r for r in _records(outcome.run_dir) if r["state"] != "FAILED"]
    assert all(0 < r["latency_ms"] <= 5.0 for r in scored)  # timed, and within the bound the space was cut to
    for member in pareto:
        assert not any(o["val_accuracy"] >= member["val_accuracy"] and o["latency_ms"] <= member["latency_ms"]
                       and (o["val_accuracy"] > member["val_accuracy"] or o["latency_ms"] < member["latency_ms"])
                       for o in scored)
    study = open_study(outcome.run_dir / "optuna.journal", "pareto")
    assert len(study.directions) == 2
    assert {t.user_attrs["trial_id"] for t in study.best_trials} == {m["trial_id"] for m in pareto}
    for member in pareto:  # the final stage re-trained each member for the full budget, tested and sized it
        assert 0.0 <= member["recheck"]["test_accuracy"] <= 1.0
        assert member["flops"] > 0 and member["latency_ms"] > 0 and member["params"] > 0
    bound = outcome.summary["size_bound"]
    assert (bound["max_latency_ms"], bound["max_params"], bound["pareto_measure"]) == (5.0, None, "latency_ms")
    assert bound["latency"]["runtime"] == "onnxruntime" and bound["latency"]["threads"] == 1
    assert 0 < outcome.summary["student"]["onnx_latency_ms"] <= 5.0
    report = (outcome.run_dir / "summary.md").read_text()
    assert "Pareto front: accuracy against size" in report and "5 ms at batch 1 (onnxruntime" in report
    assert {r["config"]["family"] for r in scored} == {"cnn", "mobilenet_v3_small"}  # nsga2's random start: both


@pytest.mark.usefixtures("inject_faults")
def test_failing_trials_end_failed_and_the_search_goes_on(teacher_cache: Path, teacher_checkpoint: str,
                                                          tmp_path: Path) -> None:
    space = tmp_path / "faults.yaml"
    decays = [*FAULT_WEIGHT_DECAYS.values(), 0.0005]
    space.write_text(f"weight_decay: {decays}\nfamilies: [cnn]\n")
    # One retry: a transient failure is retried once, a deterministic one (diverged, refused config) never.
    outcome = small_search(teacher_cache, "faults", budget=10, space_file=str(space), sampler="random",
                           teacher_checkpoint=teacher_checkpoint, top_k=0, max_failures=1)
    records = _records(outcome.run_dir)
    assert len(records) == 10
    faulty = {value: kind for kind, value in FAULT_WEIGHT_DECAYS.items()}
    expected_failed = [r for r in records if r["config"]["weight_decay"] in faulty]
    assert expected_failed, "the seeded sampler should hit at least one faulty configuration"
    assert outcome.summary["trials"]["failed"] == len(expected_failed)
    attempts = collections.Counter(trial_id for trial_id, _ in calls())
    for record in records:
        kind = faulty.get(record["config"]["weight_decay"])
        if kind is None:
            assert record["state"] == "COMPLETE" and attempts[record["trial_id"]] == 1
            continue
        assert record["state"] == "FAILED"
        assert {"raise": "InjectedFault", "nan": "NonFiniteLossError", "oom": "OutOfMemoryError",
                "config": "ValueError"}[kind] in record["error"]
        assert attempts[record["trial_id"]] == (2 if kind in ("raise", "oom") else 1), kind
    study = open_study(outcome.run_dir / "optuna.journal", "accuracy")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == len(expected_failed)
    assert all(t.values is None for t in failed)


@pytest.mark.usefixtures("inject_faults")
def test_a_search_whose_every_trial_failed_exits_1_with_the_common_error(
        teacher_cache: Path, teacher_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "all-fail.yaml"
    space.write_text(f"weight_decay: [{FAULT_WEIGHT_DECAYS['config']}]\nfamilies: [cnn]\n")
    status = search.main(["--results-dir", str(teacher_cache), "--run-name", "all-fail", "--budget", "2",
                          "--space", str(space), "--teacher-checkpoint", teacher_checkpoint, "--epochs", "2",
                          "--scheduler", "none", "--max-train-samples", "300"])
    assert status == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert "all 2 trials failed (2 with: ValueError: injected: a configuration the trainer refuses)" in error[0]
    assert "trials.csv" in error[0]
    assert len(_records(teacher_cache / "all-fail")) == 2  # the run folder is kept


def test_baseline_budget_0_trains_the_winner_s_recipe_without_the_teacher(basic_run: RunOutcome) -> None:
    """``--baseline-budget 0`` (the small searches' setting): no baseline search; the baseline is the winner's
    architecture on the winner's lr, weight decay and batch size, and the run says it is not a tuned one."""
    summary = json.loads((basic_run.run_dir / "summary.json").read_text())
    assert summary["baseline"]["search"] == {"budget": 0, "trials": 0, "best_trial": None, "best_val_accuracy": None,
                                             "states": {"completed": 0, "stopped_early": 0, "failed": 0}}
    assert not (basic_run.run_dir / "baseline").exists()
    for key in ("lr", "weight_decay", "batch_size"):
        assert summary["baseline"]["recipe"][key] == summary["best_config"][key]
    assert summary["baseline"]["arch"] == summary["student"]["arch"]
    report = (basic_run.run_dir / "summary.md").read_text()
    assert "not searched (--baseline-budget 0)" in report
    assert "own tuned recipe" not in report


def test_summary_has_the_documented_fields(basic_run: RunOutcome) -> None:
    outcome = basic_run
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert {"run", "budget", "trials", "dataset", "teacher", "best_config", "student", "baseline", "kd_gain",
            "timings"} <= set(summary)
    assert summary["schema_version"] == SCHEMA_VERSION
    assert set(summary["trials"]) == {"completed", "stopped_early", "failed"}
    assert {"name", "train", "val", "test", "classes"} <= set(summary["dataset"])
    assert {"arch", "params", "test_accuracy"} <= set(summary["teacher"])
    assert {"total_s", "teacher_s", "search_s", "final_s", "trial_busy_s", "slots"} <= set(summary["timings"])
    for entry in (summary["student"], summary["baseline"]):
        assert 0.0 <= entry["test_accuracy_mean"] <= 1.0
        assert len(entry["seeds"]) == 1
        assert [set(node) for node in entry["nodes"]] == [{"node_id", "node_ip"}]  # where each seed trained
    assert summary["kd_gain"] == pytest.approx(
        100 * (summary["student"]["test_accuracy_mean"] - summary["baseline"]["test_accuracy_mean"]))
    assert (outcome.run_dir / "best" / "model.pt2").exists() and (outcome.run_dir / "best" / "model.onnx").exists()
    onnx = summary["export"]["onnx"]  # model.onnx checked against the student on the whole test split
    assert summary["export"]["folder"] == str(outcome.run_dir / "best") == summary["student"]["export"]
    assert (onnx["images"], onnx["top1_agreement"]) == (summary["dataset"]["test"], 1.0)
    assert 0.0 <= onnx["max_abs_logit_diff"] <= 1e-4 and onnx["opset"] == ONNX_OPSET
    program = summary["export"]["program"]  # and model.pt2, the same way
    assert (program["file"], program["dynamic_batch"], program["images"]) == ("model.pt2", True,
                                                                             summary["dataset"]["test"])
    assert 0.0 <= program["max_abs_logit_diff"] <= 1e-4 and program["top1_agreement"] == 1.0
    assert (outcome.run_dir / "report.html").exists()
    trials = json.loads((outcome.run_dir / "trials.json").read_text())
    assert all(trial["node_id"] and trial["node_ip"] for trial in trials)  # every trial says where it ran


def test_exported_student_predicts_like_the_trained_one(basic_run: RunOutcome) -> None:
    best = basic_run.run_dir / "best"
    config = json.loads((best / "config.json").read_text())
    data = load_dataset("digits", max_train_samples=300)
    eager, program = load_exported(best, preprocessing=False), load_program(best)
    with torch.no_grad():
        assert torch.equal(eager(data.test_x[:]), program(data.test_x[:]))
        accuracy = (eager(data.test_x[:]).argmax(1) == data.test_y).float().mean().item()
        # load_exported's default takes [0, 1] pixels and normalises them with config.json's mean and std
        pixels = data.images[data.test_rows].float() / config["preprocessing"]["pixel_max"]
        assert torch.equal(load_exported(best)(pixels), eager(data.test_x[:]))
    # model.onnx in onnxruntime alone: the student's logits within 1e-4 on 64 test images
    session = onnxruntime.InferenceSession(str(best / "model.onnx"), providers=["CPUExecutionProvider"])
    images = data.test_x[:64]
    onnx_logits = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])
    assert (onnx_logits - eager(images).detach()).abs().max().item() <= 1e-4
    assert config["class_names"] == [str(label) for label in range(10)] and config["input_shape"] == [1, 8, 8]
    # the test accuracy summary.json reports for the exported seed is the one this model gets
    seed_index = basic_run.summary["student"]["seeds"].index(config["metadata"]["seed"])
    assert accuracy == pytest.approx(basic_run.summary["student"]["test_accuracies"][seed_index])


def test_same_seed_gives_the_same_configs_curves_and_final_metrics_on_cpu(teacher_cache: Path,
                                                                         teacher_checkpoint: str) -> None:
    """One trial at a time, TPE sees the same results in the same order: the same configurations in the same
    order, the same learning curves, and the final stage's same test accuracies."""
    flags = {"budget": 4, "sampler": "tpe", "max_concurrent": 1, "teacher_checkpoint": teacher_checkpoint}
    first = small_search(teacher_cache, "metrics-a", **flags)
    again = small_search(teacher_cache, "metrics-b", **flags)
    assert _configs(first.run_dir) == _configs(again.run_dir)
    curves = [[(r["config"], r["curve"]) for r in _records(run.run_dir)] for run in (first, again)]
    strip = [[(config, [{k: v for k, v in p.items() if k in ("epoch", "val_accuracy", "val_loss", "train_loss")}
                        for p in curve]) for config, curve in run] for run in curves]
    assert strip[0] == strip[1]
    for key in ("student", "baseline"):
        assert first.summary[key]["test_accuracies"] == again.summary[key]["test_accuracies"]


@pytest.fixture(scope="module")
def quality_run(ray_cluster: None, teacher_cache: Path, teacher_checkpoint: str) -> RunOutcome:
    """A small run with every part of the KD verdict: 2 seeds, the baseline's own search, a 3-size gain curve."""
    return small_search(teacher_cache, "quality", teacher_checkpoint=teacher_checkpoint, **QUALITY)


QUALITY = {"budget": 6, "epochs": 3, "top_k": 2, "final_seeds": 2, "gain_curve": 3, "baseline_budget": 3,
           "max_params": "4000"}


def test_summary_has_the_kd_verdict_with_its_interval(quality_run: RunOutcome) -> None:
    summary = json.loads((quality_run.run_dir / "summary.json").read_text())
    student, baseline = summary["student"], summary["baseline"]
    per_seed = [100 * (s - b) for s, b in zip(student["test_accuracies"], baseline["test_accuracies"], strict=True)]
    assert summary["kd_gain_per_seed"] == pytest.approx(per_seed)
    assert summary["kd_gain"] == pytest.approx(sum(per_seed) / 2)
    low, high = summary["kd_gain_ci95"]
    assert low <= summary["kd_gain"] <= high
    assert summary["kd_verdict"] == ("helps" if low > 0 else "hurts" if high < 0 else "no detectable difference")
    assert summary["test_resolution_points"] == pytest.approx(100 / summary["dataset"]["test"])
    assert "kd_gain_std" not in summary


def test_the_search_gain_compares_the_winner_with_the_textbook_recipe(quality_run: RunOutcome) -> None:
    summary = json.loads((quality_run.run_dir / "summary.json").read_text())
    student, textbook = summary["student"], summary["textbook"]
    assert textbook["seeds"] == student["seeds"] == summary["baseline"]["seeds"]
    recipe = textbook["recipe"]
    assert (recipe["alpha"], recipe["temperature"], recipe["feature_loss"]) == (0.9, 4.0, "none")
    # the baseline's optimisation settings: neither arm's lr or batch size was tuned for this comparison
    assert {key: recipe[key] for key in ("lr", "weight_decay", "batch_size")} == {
        key: summary["baseline"]["recipe"][key] for key in ("lr", "weight_decay", "batch_size")}
    assert "augment" not in recipe  # the dataset's default augmentation
    per_seed = [100 * (s - t) for s, t in zip(student["test_accuracies"], textbook["test_accuracies"], strict=True)]
    assert summary["search_gain_per_seed"] == pytest.approx(per_seed)
    assert summary["search_gain"] == pytest.approx(sum(per_seed) / 2)
    low, high = summary["search_gain_ci95"]
    assert summary["search_verdict"] == ("helps" if low > 0 else "hurts" if high < 0 else "no detectable difference")
    printed = search.final_table(summary)
    assert "textbook KD recipe" in printed and "search_gain (searched minus textbook recipe):" in printed
    assert "Does the search pay?" in (quality_run.run_dir / "report.html").read_text()


def test_a_winner_that_is_the_textbook_recipe_is_not_trained_again(teacher_cache: Path,
                                                                   teacher_checkpoint: str) -> None:
    # One trial each: the search's and the baseline's first trials are the standard recipe (the warm start),
    # so the winner is the textbook recipe on the baseline's settings.
    outcome = small_search(teacher_cache, "textbook-winner", budget=1, baseline_budget=1,
                           teacher_checkpoint=teacher_checkpoint)
    summary = outcome.summary
    assert summary["textbook"]["same_as_winner"] is True
    assert summary["textbook"]["test_accuracies"] == summary["student"]["test_accuracies"]
    assert summary["search_gain"] == 0.0 and summary["search_gain_per_seed"] == [0.0]
    assert "found nothing better than the textbook recipe" in (outcome.run_dir / "report.html").read_text()


def test_the_baseline_is_the_winner_under_its_own_searched_recipe(quality_run: RunOutcome) -> None:
    summary = quality_run.summary
    baseline_records = _records(quality_run.run_dir / "baseline")
    assert len(baseline_records) == 3 == summary["baseline"]["search"]["budget"]
    winner = summary["student"]["arch_config"]
    for record in baseline_records:
        config = record["config"]
        assert (config["family"], config["depth"], config["width"]) == (winner["family"], winner["depth"],
                                                                        winner["width"])
        assert config["alpha"] == 0.0 and "temperature" not in config and "feature_loss" not in config
        assert isinstance(config["augment"], bool)
    best = max((r for r in baseline_records if r["state"] == "COMPLETE"), key=lambda r: r["val_accuracy"])
    assert summary["baseline"]["recipe"] == {key: best["config"][key]
                                             for key in ("lr", "weight_decay", "batch_size", "augment")}
    assert summary["baseline"]["search"]["best_val_accuracy"] == best["val_accuracy"]


def test_no_trial_is_spent_on_a_student_over_the_bound(quality_run: RunOutcome) -> None:
    summary = quality_run.summary
    assert summary["size_bound"]["max_params"] == 4000 and summary["size_bound"]["requested"] == "4000"
    params = [record["params"] for record in _records(quality_run.run_dir)]
    assert len(params) == 6 and max(params) <= 4000
    assert summary["student"]["params"] <= 4000


def test_the_gain_curve_spans_the_front_and_is_drawn(quality_run: RunOutcome) -> None:
    summary = quality_run.summary
    curve = summary["gain_curve"]
    assert 2 <= len(curve) <= 3
    assert [entry["params"] for entry in curve] == sorted(entry["params"] for entry in curve)
    assert summary["student"]["arch"] in [entry["arch"] for entry in curve]
    for entry in curve:
        assert entry["params"] <= 4000
        assert entry["teacher_fraction"] == pytest.approx(entry["params"] / summary["teacher"]["params"])
        assert len(entry["kd_test_accuracies"]) == len(entry["baseline_test_accuracies"]) == 2
        assert entry["gain"] == pytest.approx(100 * (entry["kd_test_mean"] - entry["baseline_test_mean"]))
        assert entry["gain_ci95"][0] <= entry["gain"] <= entry["gain_ci95"][1]
    html = (quality_run.run_dir / "report.html").read_text()
    assert 'id="fig-gain_curve"' in html


def test_teacher_check_and_setup_are_in_the_summary(quality_run: RunOutcome) -> None:
    summary = quality_run.summary
    check = summary["teacher_check"]
    assert check["teacher_val_accuracy"] == summary["teacher"]["val_accuracy"]
    assert check["matches"] == (check["student_val_accuracy"] >= check["teacher_val_accuracy"])
    assert check["message"].startswith("teacher check: ")
    assert 0.0 < summary["teacher"]["train_accuracy"] <= 1.0
    assert summary["augmentation"] == {"dataset": "crop", "crop_padding": 1, "horizontal_flip": False,
                                       "teacher": True, "students": "none"}


def test_the_best_config_is_the_final_stage_winner(quality_run: RunOutcome) -> None:
    summary = quality_run.summary
    winner = next(c for c in summary["final"]["candidates"] if c["trial_id"] == summary["final"]["winner"])
    assert summary["best_config"] == winner["config"]
    exported = json.loads((quality_run.run_dir / "best" / "config.json").read_text())
    assert exported["metadata"]["config"] == winner["config"]
    assert summary["best_trial"]["trial_id"] == summary["final"]["winner"]


def test_a_trial_that_ran_every_epoch_is_its_configurations_seed_run(quality_run: RunOutcome, teacher_cache: Path,
                                                                     teacher_checkpoint: str) -> None:
    """The final stage takes a complete trial's own training as its seed --seed run: bit for bit what
    ``train_seed`` would train again, so nothing is lost by not repeating it."""
    summary = quality_run.summary
    records = {r["trial_id"]: r for r in _records(quality_run.run_dir)}
    baseline = {r["trial_id"]: r for r in _records(quality_run.run_dir / "baseline")}
    candidates = [c["trial_id"] for c in summary["final"]["candidates"]]
    # Every trial of these small searches runs every epoch (no scheduler).
    assert summary["final"]["from_search"] == [*candidates, summary["baseline"]["search"]["best_trial"]]
    assert all(records[trial_id]["checkpoint"] for trial_id in candidates)
    assert baseline[summary["baseline"]["search"]["best_trial"]]["checkpoint"]
    winner = records[summary["final"]["winner"]]
    spec, data, teacher = _quality_inputs(teacher_cache, teacher_checkpoint)
    again = train_seed(winner["config"], spec.seed, spec.epochs, data, teacher, threads=1)
    saved = torch.load(Path(winner["checkpoint"]) / STATE_FILE, weights_only=True)["student"]
    assert again.state_dict.keys() == saved.keys()
    assert all(torch.equal(again.state_dict[name], saved[name]) for name in saved)
    assert again.val_accuracy == winner["val_accuracy"]


def test_the_curves_baseline_arm_at_the_winners_size_is_the_baselines_own_runs(
        quality_run: RunOutcome, teacher_cache: Path, teacher_checkpoint: str) -> None:
    summary = quality_run.summary
    baseline = {r["trial_id"]: r for r in _records(quality_run.run_dir / "baseline")}
    best = baseline[summary["baseline"]["search"]["best_trial"]]
    spec, data, teacher = _quality_inputs(teacher_cache, teacher_checkpoint)
    tasks = SeedTasks(spec, data, teacher, 0.0)
    baseline_runs = tasks.launch_searched(best)
    assert tasks.from_search == [best["trial_id"]] and tasks.trainings == len(tasks.seeds) - 1
    winner = summary["best_config"]
    _, curve_baseline = curve_recipes(winner, best["config"], arch_of(winner), teacher_family=None)
    assert tasks.launch(curve_baseline) == baseline_runs
    assert tasks.trainings == len(tasks.seeds) - 1
    assert 0 < summary["final"]["trainings"]


def _quality_inputs(teacher_cache: Path, teacher_checkpoint: str) -> tuple[SearchSpec, TensorSplits, Teacher]:
    """``quality_run``'s spec, data and shared teacher, prepared again as the run prepared them."""
    spec = build_spec(results_dir=str(teacher_cache), run_name="quality", teacher_checkpoint=teacher_checkpoint,
                      **{**SMALL, **QUALITY})
    data = load_data(spec)
    teacher_result = obtain_teacher(spec, data, log=lambda _: None)
    space, _ = bounded_space(spec, data, count_parameters(teacher_result.model))
    return spec, data, shared_teacher(teacher_result, data, without_idle_interval(space, data), spec,
                                      log=lambda _: None)


def test_a_rerun_reads_back_the_final_stage_it_finished(quality_run: RunOutcome, teacher_cache: Path,
                                                         teacher_checkpoint: str) -> None:
    """The same command again (as after an interruption during the final stage, or once it is done): every seed
    run is read back from ``<run>/final/``, none is trained again, and the numbers are the same.
    Last in this file: it rewrites ``quality_run``'s summary.json (with the same numbers)."""
    first = quality_run.summary
    assert first["final"]["trainings"] > 0 and first["final"]["kept"] == 0
    stored = len(list((quality_run.run_dir / "final").glob("*.pt")))
    again = small_search(teacher_cache, "quality", teacher_checkpoint=teacher_checkpoint, **QUALITY).summary
    assert again["final"]["trainings"] == 0
    assert again["final"]["kept"] == stored >= first["final"]["trainings"]
    for key in ("student", "baseline", "textbook"):
        assert again[key]["test_accuracies"] == first[key]["test_accuracies"]
    assert (again["kd_gain"], again["search_gain"]) == (first["kd_gain"], first["search_gain"])
    assert [entry["gain"] for entry in again["gain_curve"]] == [entry["gain"] for entry in first["gain_curve"]]
