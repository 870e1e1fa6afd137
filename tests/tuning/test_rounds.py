"""Repeated rounds (``--rounds``): the flag, the stop rule and each round's summary entry, as pure functions.

The end-to-end runs of ``--rounds 2`` and ``--rounds auto`` are in ``test_rounds_search.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import search
from runfolder import HELPS, HURTS, NO_DIFFERENCE, paired_gain
from tests.trainers.test_data import write_image_folder
from trainers import build_student, load_dataset, load_exported
from trainers.export import read_export_config
from tuning import UserError, build_spec
from tuning.final import export_run
from tuning.rounds import (
    CAP,
    TEACHER_ASSISTANT_FRACTION,
    best_round,
    export_round,
    round_entry,
    round_line,
    stop_reason,
    teacher_assistant_note,
)
from tuning.seed_runs import SeedRun
from tuning.spec import AUTO_ROUNDS_CAP


@pytest.mark.parametrize("value, expected", [(None, (AUTO_ROUNDS_CAP, True)), ("auto", (AUTO_ROUNDS_CAP, True)),
                                             (" AUTO ", (AUTO_ROUNDS_CAP, True)), ("1", (1, False)),
                                             ("2", (2, False)), (4, (4, False))])
def test_rounds_flag_values(value: object, expected: tuple[int, bool], tmp_path: object) -> None:
    spec = build_spec(results_dir=str(tmp_path), rounds=value)
    assert (spec.rounds, spec.rounds_auto) == expected
    assert {"rounds", "rounds_auto"} <= set(spec.to_dict())


def test_a_smoke_run_runs_one_round_unless_asked(tmp_path: object) -> None:
    assert (build_spec(results_dir=str(tmp_path), smoke=True).rounds) == 1
    assert build_spec(results_dir=str(tmp_path), smoke=True, rounds="auto").rounds_auto


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "twice", "", 0, 1.5, True])
def test_bad_rounds_are_one_clear_line(value: object, tmp_path: object) -> None:
    with pytest.raises(UserError) as error:
        build_spec(results_dir=str(tmp_path), rounds=value)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("--rounds must be auto or a whole number of rounds, 1 or more (1: no extra round)")


def test_bad_rounds_exit_2_from_the_command(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    assert search.main(["--rounds", "none", "--results-dir", str(tmp_path), "--run-name", "bad"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["search.py: error: --rounds must be auto or a whole number of rounds, 1 or more "
                     "(1: no extra round), got 'none'"]


def test_help_names_every_rounds_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        search.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--rounds ROUNDS" in text and "auto (default" in text and "N (exactly N; 1: none extra)" in text


# ---------------------------------------------------------------------------------------------------
# The stop rule


@pytest.mark.parametrize("cap, auto, kd_verdict, verdicts, expected", [
    # auto: round 2 only after a main verdict of helps, round k+1 only after round k helped, up to the cap
    (3, True, HELPS, [], None),
    (3, True, NO_DIFFERENCE, [], f"kd_verdict {NO_DIFFERENCE}, not helps"),
    (3, True, HURTS, [], f"kd_verdict {HURTS}, not helps"),
    (3, True, None, [], "kd_verdict None, not helps"),  # one seed, or no final comparison
    (3, True, HELPS, [HELPS], None),
    (3, True, HELPS, [NO_DIFFERENCE], f"{NO_DIFFERENCE} at round 2"),
    (3, True, HELPS, [HURTS], f"{HURTS} at round 2"),
    (3, True, HELPS, [HELPS, HELPS], CAP),
    (3, True, HELPS, [HELPS, NO_DIFFERENCE], f"{NO_DIFFERENCE} at round 3"),  # the verdict is said over the cap
    # an explicit N runs every round up to N, whatever the verdicts
    (1, False, HELPS, [], CAP),
    (2, False, HURTS, [], None),
    (2, False, HURTS, [NO_DIFFERENCE], CAP),
    (4, False, NO_DIFFERENCE, [HURTS, NO_DIFFERENCE], None),
])
def test_stop_rule(cap: int, auto: bool, kd_verdict: str | None, verdicts: list[str], expected: str | None) -> None:
    assert stop_reason(cap, auto, kd_verdict, verdicts) == expected


def test_no_round_follows_a_winner_without_kd_terms() -> None:
    assert "no KD term" in str(stop_reason(3, True, HELPS, [], distils=False))
    assert stop_reason(3, True, HURTS, [], distils=False) == f"kd_verdict {HURTS}, not helps"
    assert "no KD term" in str(stop_reason(3, False, HELPS, [], distils=False))
    assert stop_reason(1, False, HELPS, [], distils=False) == CAP


# Per-seed test accuracies recorded from a 5-seed run (fixed seeds 0-4): round 2 beat round 1 on every seed,
# round 3 moved by a test image up or down, so its interval includes zero.
RECORDED = {1: [0.9611, 0.9583, 0.9639, 0.9556, 0.9611],
            2: [0.9667, 0.9639, 0.9694, 0.9639, 0.9667],
            3: [0.9694, 0.9611, 0.9694, 0.9667, 0.9639]}
BASELINE = [0.9500, 0.9472, 0.9528, 0.9444, 0.9500]


def _runs(tests: list[float], val_offset: float = 0.0) -> list[SeedRun]:
    return [SeedRun({}, seed, accuracy + val_offset, {}, {}) for seed, accuracy in enumerate(tests)]


def _replay(cap: int, auto: bool) -> tuple[list[dict], str]:
    """The rounds loop of ``run_rounds`` on the recorded accuracies instead of trainings."""
    kd_verdict = paired_gain(RECORDED[1], BASELINE).verdict
    rounds = [round_entry(1, ["teacher"], _runs(RECORDED[1]), RECORDED[1])]
    while (reason := stop_reason(cap, auto, kd_verdict, [e["verdict"] for e in rounds[1:]])) is None:
        number = len(rounds) + 1
        tests = RECORDED[number]
        rounds.append(round_entry(number, ["teacher", f"round {number - 1} student"], _runs(tests), tests,
                                  rounds[-1]["test_accuracies"]))
    return rounds, reason


def test_auto_rounds_stop_at_the_first_interval_that_includes_zero() -> None:
    assert paired_gain(RECORDED[1], BASELINE).verdict == HELPS
    rounds, reason = _replay(AUTO_ROUNDS_CAP, auto=True)
    assert [entry["verdict"] for entry in rounds[1:]] == [HELPS, NO_DIFFERENCE]
    low, high = rounds[2]["gain_ci95"]
    assert low < 0 < high
    assert reason == f"{NO_DIFFERENCE} at round 3"
    # Stopped by the verdict, not the cap: with a higher cap the same rounds run.
    assert _replay(5, auto=True)[1] == reason and len(_replay(5, auto=True)[0]) == 3


def test_an_explicit_number_of_rounds_runs_them_all() -> None:
    rounds, reason = _replay(2, auto=False)
    assert [entry["round"] for entry in rounds] == [1, 2] and reason == CAP


def test_round_entries_hold_the_documented_fields() -> None:
    rounds, _ = _replay(AUTO_ROUNDS_CAP, auto=True)
    first, second = rounds[0], rounds[1]
    assert {"round", "teachers", "test_accuracy_mean", "test_accuracy_std", "test_accuracies", "seeds"} <= set(first)
    assert "gain" not in first and "verdict" not in first
    assert second["teachers"] == ["teacher", "round 1 student"]
    assert second["seeds"] == [0, 1, 2, 3, 4]
    assert second["gain"] == pytest.approx(100 * (second["test_accuracy_mean"] - first["test_accuracy_mean"]))
    assert second["gain_ci95"][0] <= second["gain"] <= second["gain_ci95"][1]
    pairs = zip(RECORDED[1], RECORDED[2], strict=True)
    assert second["gain_per_seed"] == pytest.approx([100 * (b - a) for a, b in pairs])
    assert round_line(second) == ("round 2: test 0.9661 ± 0.0023 over 5 seeds; gain over round 1: +0.61 points, "
                                  "95% CI [+0.46, +0.76]: helps (these seeds detect gains above 0.15 points)")
    assert round_line(second, 0.05).endswith("helps (one test image = 0.05 points; these seeds detect gains above "
                                             "0.15 points)")
    assert round_line(first).endswith("(taught by teacher)")


def test_one_seed_gives_no_interval() -> None:
    entry = round_entry(2, ["t", "round 1 student"], _runs([0.5]), [0.5], [0.4])
    assert entry["gain_ci95"] is None and entry["verdict"] == NO_DIFFERENCE
    assert "no interval from one seed" in round_line(entry)


def test_the_best_round_is_chosen_by_validation_the_earliest_of_ties() -> None:
    assert best_round([0.95, 0.97, 0.96]) == 1
    assert best_round([0.97, 0.97, 0.96]) == 0
    assert best_round([0.9]) == 0


def test_a_teacher_assistant_is_offered_below_two_percent() -> None:
    assert teacher_assistant_note(2_000, 100_000, 5_000) is None  # exactly 2 %
    note = teacher_assistant_note(1_000, 100_000, 5_000)
    assert note is not None and note["student_fraction"] == pytest.approx(0.01)
    assert note["student_fraction"] < TEACHER_ASSISTANT_FRACTION
    assert note["assistant_max_params"] == 10_000  # the geometric mean of the two sizes
    assert "--max-params 10000" in note["how"] and "--teacher-checkpoint <that run>/best/model.pt2 --max-params 5000" \
        in note["how"]


def test_the_console_has_a_line_per_extra_round_the_stop_and_the_assistant_hint() -> None:
    rounds, reason = _replay(AUTO_ROUNDS_CAP, auto=True)
    summary = {"rounds": rounds, "rounds_stop": reason, "rounds_best": 2,
               "teacher_assistant": teacher_assistant_note(1_000, 100_000, 5_000)}
    lines = search.rounds_lines(summary)
    assert lines[:2] == [round_line(rounds[1]), round_line(rounds[2])]  # no resolution in this summary
    assert lines[2] == "rounds: stopped (no detectable difference at round 3); exported round 2 (best by validation)"
    assert lines[3].startswith("teacher assistant: the student is 1.00% of the teacher: a teacher-assistant step")
    assert search.rounds_lines({"rounds": rounds[:1], "rounds_stop": CAP, "rounds_best": 1}) == []
    assert search.rounds_lines({"rounds": None}) == []


def test_a_later_round_is_exported_with_its_round_and_teachers(tmp_path: Path) -> None:
    """What ``run_rounds`` writes when a later round is best by validation (``export_round``)."""
    data = load_dataset("digits", max_train_samples=100)
    model = build_student("cnn", 1, 4, 1, 10)
    run = SeedRun({"family": "cnn", "depth": 1, "width": 4}, 3, 0.5, dict(model.state_dict()), model.arch)
    spec = build_spec(results_dir=str(tmp_path), run_name="exported")
    entry = export_round(spec, data, run, {"round": 2, "teachers": ["cnn-large", "round 1 student"]})
    exported = load_exported(spec.run_dir / "best", preprocessing=False)
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    metadata = json.loads((spec.run_dir / "best" / "config.json").read_text())["metadata"]
    assert (metadata["round"], metadata["teachers"], metadata["seed"]) == (2, ["cnn-large", "round 1 student"], 3)
    assert metadata["config"] == run.config and metadata["val_accuracy"] == 0.5
    # summary.json's export then describes this round's files: model.onnx checked on the whole test split
    assert entry["folder"] == str(spec.run_dir / "best")
    assert entry["onnx"]["images"] == len(data.test_y) and entry["onnx"]["max_abs_logit_diff"] <= 1e-4


def test_an_image_folders_export_names_its_class_folders(tmp_path: Path) -> None:
    """``export_run`` on an image folder: config.json's class names are the class folders in label order, with
    the input size, pixel scale and normalisation a user needs to run ``model.onnx`` without kdsearch."""
    write_image_folder(tmp_path / "images", classes=("fox", "cat", "dog"), per_class=6, shape=(12, 10, 3))
    data = load_dataset("imagefolder", str(tmp_path / "images"), seed=0)
    model = build_student("cnn", 1, 4, 3, 3)
    run = SeedRun({"family": "cnn", "depth": 1, "width": 4}, 0, 0.5, dict(model.state_dict()), model.arch)
    spec = build_spec(results_dir=str(tmp_path), run_name="folder")
    config = read_export_config(export_run(spec, data, run))
    assert config["class_names"] == sorted(path.name for path in (tmp_path / "images").iterdir()) == ["cat", "dog",
                                                                                                      "fox"]
    assert (config["input_shape"], config["channels"], config["family"]) == ([3, 12, 10], 3, "cnn")
    assert config["preprocessing"]["mean"] == list(data.mean) and config["preprocessing"]["pixel_max"] == 255.0
    assert config["onnx"]["images"] == len(data.test_y) and config["onnx"]["max_abs_logit_diff"] <= 1e-4
