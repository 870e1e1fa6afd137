"""Repeated rounds of distillation (``--rounds``), the last step of the final stage.

Round 1 is the final stage's distilled student: the winner's configuration, one run per final seed,
finetuned. Round k+1 re-initialises that configuration's student (the same initial weights for the same
seed, ``trainers.initial_student``) and distils it from the original teacher and round k's student of the
same seed together: the KD target is the mean of their logits, feature losses read the teacher's maps
(``trainers.ensemble``; born-again networks, Furlanello et al. 2018, with the teacher kept). It is
finetuned by the winner's rule and compared with round k over the paired seeds (``runfolder.paired_gain``).

``--rounds auto`` runs round k+1 only while round k helped: round 2 when the main KD verdict is
``helps``, round k+1 when round k beat round k-1 with ``helps``, at most ``AUTO_ROUNDS_CAP`` rounds.
``--rounds N`` runs every round up to N (an explicit request), each verdict still recorded.
The exported ``best/`` student is the best round's best seed, both chosen by validation accuracy.

The stop rule, the choice of the best round and each round's ``summary.json`` entry are pure functions
(unit-tested); ``run_rounds`` launches the trainings as Ray tasks like the rest of the final stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
import torch

from runfolder import HELPS, format_points, interval_words, mean_std, paired_gain
from trainers import (
    DistillConfig,
    Teacher,
    TensorSplits,
    count_parameters,
    distill,
    ensemble_teacher,
    initial_student,
    pick_device,
)
from trainers.export import PROGRAM_FILE
from tuning.final import export_entry, export_run
from tuning.seed_runs import SeedRun, SeedTasks, cpu_state, seed_model, seed_test_accuracy, this_node
from tuning.spec import SearchSpec

Log = Callable[[str], None]
# What summary.json holds for the rounds when the final stage did not run.
EMPTY_ROUNDS: dict[str, Any] = {"rounds": None, "rounds_stop": None, "rounds_best": None, "teacher_assistant": None}
# A student under this share of the teacher's parameters may learn better through a mid-size teacher
# assistant (Mirzadeh et al. 2020): the run says so and how to measure it.
TEACHER_ASSISTANT_FRACTION = 0.02
CAP = "cap"


def stop_reason(cap: int, auto: bool, kd_verdict: str | None, verdicts: Sequence[str],
                distils: bool = True) -> str | None:
    """Why no round follows the last one run, or ``None`` when the next round runs.

    ``verdicts`` are the comparisons of rounds 2, 3, ... with the round before (empty after round 1);
    ``kd_verdict`` is round 1's verdict over the baseline. ``distils``: whether the winner's configuration
    has a KD term at all (without one, a new teacher changes nothing and a round would repeat round 1).
    """
    done = len(verdicts) + 1
    last = kd_verdict if not verdicts else verdicts[-1]
    # With auto, a last round that did not help is the reason, even at the cap: it says more than the cap.
    if auto and last != HELPS:
        return f"kd_verdict {kd_verdict}, not {HELPS}" if not verdicts else f"{last} at round {done}"
    if done >= cap:
        return CAP
    if not distils:
        return "the winner has no KD term (alpha 0, no feature loss): another round would repeat round 1"
    return None


def best_round(val_means: Sequence[float]) -> int:
    """The index of the round with the highest validation mean; the earliest of tied rounds (fewer trainings)."""
    return max(range(len(val_means)), key=lambda index: (val_means[index], -index))


def round_entry(number: int, teachers: list[str], runs: Sequence[SeedRun], tests: list[float],
                previous_tests: list[float] | None = None) -> dict[str, Any]:
    """One round's line of ``summary.json["rounds"]``: per-seed test and validation accuracies, their spread,
    and from round 2 on the paired gain over the previous round (points, 95 % interval, verdict)."""
    test_mean, test_std = mean_std(tests)
    val_accuracies = [run.val_accuracy for run in runs]
    entry: dict[str, Any] = {
        "round": number, "teachers": teachers, "seeds": [run.seed for run in runs],
        "test_accuracies": tests, "test_accuracy_mean": test_mean, "test_accuracy_std": test_std,
        "val_accuracies": val_accuracies, "val_accuracy_mean": mean_std(val_accuracies)[0],
        "finetuned_seeds": [run.seed for run in runs if run.finetuned],
    }
    if previous_tests is not None:
        gain = paired_gain(tests, previous_tests)
        entry.update({"gain": gain.gain, "gain_ci95": gain.interval(), "verdict": gain.verdict,
                      "gain_per_seed": list(gain.per_seed)})
    return entry


def round_line(entry: dict[str, Any], resolution: float | None = None) -> str:
    """A round on one line, in the style of the KD verdict (``search.gain_line``): with its interval, the
    smallest gain its seeds detect (the interval's half width) and ``resolution`` (points per test image)."""
    head = (f"round {entry['round']}: test {entry['test_accuracy_mean']:.4f} ± {entry['test_accuracy_std']:.4f} "
            f"over {len(entry['seeds'])} seeds")
    if "gain" not in entry:
        return f"{head} (taught by {' + '.join(entry['teachers'])})"
    spread, detectable = interval_words(entry["gain_ci95"])
    notes = [f"one test image = {resolution:.2f} points"] if resolution is not None else []
    notes += [detectable] if detectable else []
    tail = f" ({'; '.join(notes)})" if notes else ""
    return (f"{head}; gain over round {entry['round'] - 1}: {format_points(entry['gain'])} points, {spread}: "
            f"{entry['verdict']}{tail}")


def teacher_assistant_note(student_params: int, teacher_params: int, max_params: int) -> dict[str, Any] | None:
    """When the student is under ``TEACHER_ASSISTANT_FRACTION`` of the teacher: how to try a teacher-assistant
    step with two runs (a mid-size student at the geometric mean of the two sizes, then this size taught by
    it); ``None`` otherwise."""
    fraction = student_params / teacher_params
    if fraction >= TEACHER_ASSISTANT_FRACTION:
        return None
    assistant = int(math.sqrt(student_params * teacher_params))
    how = (f"the student is {fraction:.2%} of the teacher: a teacher-assistant step is possible: run search.py "
           f"--max-params {assistant} (a mid-size student), then search.py --teacher-checkpoint "
           f"<that run>/best/{PROGRAM_FILE} --max-params {max_params}, and compare its kd_gain and test accuracy "
           "with this run's")
    return {"student_fraction": fraction, "assistant_max_params": assistant, "student_max_params": max_params,
            "how": how}


def train_round_seed(config: dict[str, Any], seed: int, epochs: int, data: TensorSplits, teacher: Teacher,
                     previous: SeedRun, threads: int) -> SeedRun:
    """Round k+1 for one seed: a fresh student of ``config`` distilled from ``teacher`` and ``previous`` (round
    k's run with this seed) together (a Ray task of the final stage)."""
    torch.set_num_threads(threads)
    device = pick_device()
    data = data.to(device)
    teacher = teacher.to(device)
    distill_config = DistillConfig.from_mapping({**config, "epochs": epochs, "seed": seed})
    combined = ensemble_teacher(teacher, seed_model(previous), data.train_x, data.info,
                                data.background,
                                name=f"{teacher.name} + round student")
    # Initialised (init_from_teacher included) from the original teacher, exactly as round 1's student was.
    student = initial_student(distill_config, data, teacher)
    result = distill(distill_config, data, combined, student=student, validate_each_epoch=False)
    return SeedRun(config, seed, result.last_val_accuracy, cpu_state(result.model), result.model.arch,
                   finetuned=False, node=this_node())


def run_rounds(spec: SearchSpec, tasks: SeedTasks, data: TensorSplits, teacher: Teacher, winner: list[SeedRun],
               result: dict[str, Any], log: Log) -> dict[str, Any]:
    """The rounds' fields of ``summary.json`` (``rounds``, ``rounds_stop``, ``rounds_best``,
    ``teacher_assistant``); re-exports ``best/`` when a later round is best by validation.

    ``winner`` is round 1 (the finetuned runs, one per seed) and ``result`` the final stage's comparison
    (its student's per-seed test accuracies and the KD verdict).
    """
    config = winner[0].config
    teacher_params = count_parameters(teacher.model)
    student_params = count_parameters(seed_model(winner[0]))
    # Without a parameter bound (--max-flops or --max-latency-ms alone), the hint bounds the student by its size.
    assistant = teacher_assistant_note(student_params, teacher_params,
                                       spec.max_params_for(teacher_params) or student_params)
    if assistant is not None:
        log(f"final stage: {assistant['how']}")
    rounds = [round_entry(1, [teacher.name], winner, list(result["student"]["test_accuracies"]))]
    runs_of = [winner]
    remote = ray.remote(**tasks.options)(train_round_seed)
    distils = DistillConfig.from_mapping(config).uses_kd_terms
    while (reason := stop_reason(spec.rounds, spec.rounds_auto, result["kd_verdict"],
                                 [entry["verdict"] for entry in rounds[1:]], distils)) is None:
        number, started = len(rounds) + 1, time.perf_counter()
        log(f"final stage: round {number}: a fresh student distilled from the teacher and round {number - 1}'s "
            f"student over seeds {[run.seed for run in runs_of[-1]]}")
        trained = [remote.remote(config, run.seed, spec.epochs, tasks.data_ref, tasks.teacher_ref, run, tasks.threads)
                   for run in runs_of[-1]]
        runs = tasks.get(tasks.finetune(trained), f"round {number} seeds")
        tests = [seed_test_accuracy(run, data) for run in runs]
        entry = round_entry(number, [teacher.name, f"round {number - 1} student"], runs, tests,
                            rounds[-1]["test_accuracies"])
        entry["seconds"] = time.perf_counter() - started
        rounds.append(entry)
        runs_of.append(runs)
        log(f"final stage: {round_line(entry, result.get('test_resolution_points'))}")
    best = best_round([entry["val_accuracy_mean"] for entry in rounds])
    if len(rounds) > 1:
        log(f"final stage: rounds stopped ({reason}); round {best + 1} is the best by validation"
            + (", its best seed exported" if best else ""))
    result = {"rounds": rounds, "rounds_stop": reason, "rounds_best": best + 1, "teacher_assistant": assistant}
    if best:  # summary.json's export then describes this round's files
        result["export"] = export_round(spec, data, max(runs_of[best], key=lambda run: run.val_accuracy),
                                        rounds[best])
    return result


def export_round(spec: SearchSpec, data: TensorSplits, run: SeedRun, entry: dict[str, Any]) -> dict[str, Any]:
    """Write ``run`` (a later round's best seed) to ``<run>/best/`` over round 1's export, with the metadata
    of that export plus its round and teachers; returns ``summary.json``'s ``export`` for it."""
    return export_entry(export_run(spec, data, run, round=entry["round"], teachers=entry["teachers"]))
