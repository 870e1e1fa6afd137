"""A realistic fake run folder: a real Optuna journal plus matching trials.json and summary.json.

``make_run(tmp_path, ...)`` writes what the tuning code writes for a 12-trial search on ``digits``
(``summary.json`` in the current schema, or the old one with ``schema="old"``):
COMPLETE, STOPPED (by ASHA, told to Optuna as COMPLETE with their partial accuracy) and FAILED
(Optuna FAIL) trials, with conditional parameters (``beta``, ``init_from_teacher``) like the real
define-by-run space.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

FAMILIES = ("cnn", "resnet", "mobilenet")
DEPTH = {"cnn": (2, 6), "resnet": (2, 8), "mobilenet": (3, 10)}
STATES = (
    "COMPLETE", "COMPLETE", "STOPPED", "FAILED", "COMPLETE", "STOPPED",
    "COMPLETE", "COMPLETE", "FAILED", "STOPPED", "COMPLETE", "COMPLETE",
)  # fmt: skip
EPOCHS = 5
T0 = 1_700_000_000.0
WINNER = "t_0006"


def _config(rng: random.Random, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    family = FAMILIES[i % 3]
    lo, hi = DEPTH[family]
    config: dict[str, Any] = {
        "family": family,
        "depth": rng.randint(lo, hi),
        "width": rng.choice([8, 16, 24, 32, 48, 64]),
        "alpha": round(rng.uniform(0.0, 1.0), 3),
        "temperature": round(rng.uniform(1.0, 20.0), 2),
        "feature_loss": ("none", "attention", "hint")[i % 3 if i % 4 else 0],
    }
    dists: dict[str, Any] = {
        "family": CategoricalDistribution(list(FAMILIES)),
        "depth": IntDistribution(lo, hi),
        "width": IntDistribution(8, 64, log=True),
        "alpha": FloatDistribution(0.0, 1.0),
        "temperature": FloatDistribution(1.0, 20.0, log=True),
        "feature_loss": CategoricalDistribution(["none", "attention", "hint"]),
    }
    if config["feature_loss"] != "none":
        config["beta"] = round(10 ** rng.uniform(-3, 1), 5)
        dists["beta"] = FloatDistribution(1e-3, 10.0, log=True)
    config["lr"] = round(10 ** rng.uniform(-4, -1), 6)
    config["weight_decay"] = round(10 ** rng.uniform(-6, -2), 8)
    config["batch_size"] = rng.choice([32, 64, 128])
    config["distill_interval"] = rng.choice([1, 2, 4, 8])
    dists["lr"] = FloatDistribution(1e-4, 1e-1, log=True)
    dists["weight_decay"] = FloatDistribution(1e-6, 1e-2, log=True)
    dists["batch_size"] = CategoricalDistribution([32, 64, 128])
    dists["distill_interval"] = CategoricalDistribution([1, 2, 4, 8])
    if family == "resnet":
        config["init_from_teacher"] = rng.random() < 0.5
        dists["init_from_teacher"] = CategoricalDistribution([False, True])
    return config, dists


def _trials(rng: random.Random) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Trial records plus their Optuna distributions, on two parallel slots."""
    slots = [T0, T0]
    out = []
    for i, state in enumerate(STATES):
        config, dists = _config(rng, i)
        params = 1000 * config["width"] * config["depth"] + 500 * (FAMILIES.index(config["family"]) + 1)
        n_epochs = {"COMPLETE": EPOCHS, "STOPPED": 1 + i % 2, "FAILED": i % 2}[state]
        slot = min(range(2), key=lambda s: slots[s])
        start = slots[slot] + 0.5
        curve, t = [], start
        base = 0.55 + 0.3 * rng.random()
        for epoch in range(1, n_epochs + 1):
            t += 2.0
            curve.append(
                {
                    "epoch": epoch,
                    "val_accuracy": round(min(0.99, base + 0.025 * epoch), 4),
                    "val_loss": round(1.5 / epoch, 4),
                    "train_loss": round(1.4 / epoch, 4),
                    "params": params,
                    "epoch_seconds": 2.0,
                    "time": t,
                }
            )
        end = t + 0.2
        slots[slot] = end
        failed = state == "FAILED"
        best = max((p["val_accuracy"] for p in curve), default=None) if not failed else None
        record = {
            "trial_id": f"t_{i:04d}",
            "number": i,
            "state": state,
            "config": config,
            "curve": curve,
            "start_time": start,
            "end_time": end,
            "error": "RuntimeError: CUDA out of memory" if failed else None,
            "best_val_accuracy": best,
            "params": None if failed else params,
        }
        out.append((record, dists))
    # The chosen config must be the best complete one for the fake to be self-consistent.
    out[6][0]["best_val_accuracy"] = 0.97
    out[6][0]["curve"][-1]["val_accuracy"] = 0.97
    return out


def _write_journal(path: Path, trials: list[tuple[dict[str, Any], dict[str, Any]]], pareto: bool) -> None:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    directions = ["maximize", "minimize"] if pareto else ["maximize"]
    study = optuna.create_study(study_name="kdsearch", storage=storage, directions=directions)
    for record, dists in trials:
        attrs = {"trial_id": record["trial_id"], "state": record["state"]}
        inter = {p["epoch"]: p["val_accuracy"] for p in record["curve"]}
        if record["state"] == "FAILED":
            ft = optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL,
                params=record["config"],
                distributions=dists,
                user_attrs=attrs,
                intermediate_values=inter,
            )
        else:
            values = [record["best_val_accuracy"]] + ([float(record["params"])] if pareto else [])
            ft = optuna.trial.create_trial(
                values=values,
                params=record["config"],
                distributions=dists,
                user_attrs=attrs,
                intermediate_values=inter,
            )
        study.add_trial(ft)


T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}  # two-sided 95 % t quantiles by number of seeds
STUDENT_TESTS = [0.95, 0.958, 0.952, 0.9556, 0.9519]
BASELINE_TESTS = [0.9407, 0.9481, 0.9444, 0.9444, 0.9407]


def paired_gain(kd: list[float], alone: list[float]) -> tuple[float, list[float], list[float]]:
    """Mean paired gain in points, its 95 % t-interval and the per-seed gains, as the final stage computes them."""
    gains = [100 * (k - a) for k, a in zip(kd, alone, strict=True)]
    mean = statistics.fmean(gains)
    half = T_975[len(gains)] * statistics.stdev(gains) / math.sqrt(len(gains))
    return mean, [mean - half, mean + half], gains


def _gain_curve() -> list[dict[str, Any]]:
    """Four student sizes: distillation helps the small ones, makes no detectable difference, then hurts."""
    rows = []
    for width, shift in ((4, 0.02), (8, 0.012), (16, 0.001), (28, -0.006)):
        kd = [round(0.9 + width / 400 + shift + 0.002 * (s % 3), 4) for s in range(5)]
        alone = [round(0.9 + width / 400 + 0.0035 * (s % 2) + 0.001 * s, 4) for s in range(5)]
        gain, ci, _ = paired_gain(kd, alone)
        params = 115 * width * width + 90 * width
        rows.append(
            {
                "arch": f"cnn depth 1 width {width}",
                "arch_config": {"family": "cnn", "depth": 1, "width": width},
                "params": params,
                "teacher_fraction": params / TEACHER_PARAMS,
                "kd_test_mean": statistics.fmean(kd),
                "baseline_test_mean": statistics.fmean(alone),
                "gain": gain,
                "gain_ci95": ci,
                "verdict": "helps" if ci[0] > 0 else "hurts" if ci[1] < 0 else "no detectable difference",
                "seeds": list(range(5)),
                "kd_test_accuracies": kd,
                "baseline_test_accuracies": alone,
            }
        )
    return rows


TEACHER_PARAMS = 2_345_678
ROUND_2_TESTS = [0.9556, 0.9556, 0.9528, 0.9583, 0.95]


def _rounds() -> list[dict[str, Any]]:
    """Round 1 (the distilled student) and a round 2 that makes no detectable difference over it."""
    gain, ci, per_seed = paired_gain(ROUND_2_TESTS, STUDENT_TESTS)
    return [
        {"round": 1, "teachers": ["resnet-large"], "seeds": list(range(5)), "test_accuracies": STUDENT_TESTS,
         "test_accuracy_mean": statistics.fmean(STUDENT_TESTS), "test_accuracy_std": statistics.stdev(STUDENT_TESTS)},
        {"round": 2, "teachers": ["resnet-large", "round 1 student"], "seeds": list(range(5)),
         "test_accuracies": ROUND_2_TESTS, "test_accuracy_mean": statistics.fmean(ROUND_2_TESTS),
         "test_accuracy_std": statistics.stdev(ROUND_2_TESTS), "gain": gain, "gain_ci95": ci,
         "verdict": "helps" if ci[0] > 0 else "hurts" if ci[1] < 0 else "no detectable difference",
         "gain_per_seed": per_seed},
    ]




def _summary(trials: list[dict[str, Any]], objective: str, null_student: bool, schema: str) -> dict[str, Any]:
    winner = next(t for t in trials if t["trial_id"] == WINNER)
    seeds = 5 if schema == "new" else 3
    student = {
        "arch": f"{winner['config']['family']}-d{winner['config']['depth']}-w{winner['config']['width']}",
        "params": winner["params"],
        "flops": 1_200_000,
        "latency_ms": 0.42,
        "test_accuracy_mean": statistics.fmean(STUDENT_TESTS[:seeds]),
        "test_accuracy_std": statistics.stdev(STUDENT_TESTS[:seeds]),
        "test_accuracies": STUDENT_TESTS[:seeds],
        "seeds": list(range(seeds)),
    }
    baseline = dict(
        student,
        test_accuracy_mean=statistics.fmean(BASELINE_TESTS[:seeds]),
        test_accuracy_std=statistics.stdev(BASELINE_TESTS[:seeds]),
        test_accuracies=BASELINE_TESTS[:seeds],
    )
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    top = sorted(complete, key=lambda t: -t["best_val_accuracy"])[:3]
    summary: dict[str, Any] = {
        "run": "r1",
        "budget": len(trials),
        "objective": objective,
        "trials": {
            "completed": sum(t["state"] == "COMPLETE" for t in trials),
            "stopped_early": sum(t["state"] == "STOPPED" for t in trials),
            "failed": sum(t["state"] == "FAILED" for t in trials),
        },
        "dataset": {"name": "digits", "train": 1257, "val": 270, "test": 360, "classes": 10},
        "teacher": {
            "arch": "resnet-large",
            "params": TEACHER_PARAMS,
            "test_accuracy": 0.9815,
            "flops": 9.1e7,
            "latency_ms": 3.1,
        },
        "best_config": winner["config"],
        "student": None if null_student else student,
        "baseline": None if null_student else baseline,
        "final": None
        if null_student
        else {
            "candidates": [
                {
                    "trial_id": t["trial_id"],
                    "config": t["config"],
                    "val_accuracy_mean": t["best_val_accuracy"] - 0.01,
                    "val_accuracy_std": 0.005,
                    "seeds": list(range(seeds)),
                }
                for t in top
            ],
            "winner": WINNER,
            "finetune": {"val_before": 0.96, "val_after": 0.965, "kept": True},
        },
        "pareto": [],
        "timings": {
            "total_s": 95.0,
            "teacher_s": 10.0,
            "search_s": 60.0,
            "final_s": 25.0,
            "trial_busy_s": 110.0,
            "slots": 2,
        },
    }
    if schema == "old":
        summary["kd_gain"] = None if null_student else 1.22
        summary["kd_gain_std"] = None if null_student else 0.72
        return summary
    summary["teacher"].update(source="trained", train_accuracy=1.0, val_accuracy=0.9889)
    summary["teacher_check"] = {
        "student": "cnn depth 1 width 16",
        "params": 26_394,
        "epochs": 15,
        "student_val_accuracy": 0.963,
        "teacher_val_accuracy": 0.9889,
        "matches": False,
        "message": "teacher check: passed, a cnn depth 1 width 16 student trained alone reaches 96.3% (teacher 98.9%)",
    }
    summary["size_bound"] = {"max_params": 234_567, "teacher_fraction": 0.1, "requested": "10%"}
    summary["augmentation"] = {
        "dataset": "crop",
        "crop_padding": 1,
        "horizontal_flip": False,
        "teacher": True,
        "students": "searched",
    }
    gain, ci, per_seed = paired_gain(STUDENT_TESTS, BASELINE_TESTS)
    summary.update(
        kd_gain=None if null_student else gain,
        kd_gain_ci95=None if null_student else ci,
        kd_verdict=None if null_student else "helps",
        kd_gain_per_seed=None if null_student else per_seed,
        test_resolution_points=100 / 360,
        gain_curve=None if null_student else _gain_curve(),
        rounds=None if null_student else _rounds(),
        rounds_stop=None if null_student else "no detectable difference at round 2",
        rounds_best=None if null_student else 1,
    )
    if not null_student:
        baseline["recipe"] = {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 64, "augment": False}
        baseline["search"] = {"trials": 10, "best_val_accuracy": 0.9704}
    return summary


DROP = object()


def edit_summary(run_dir: Path, **changes: Any) -> None:
    """Overwrite top-level fields of a run folder's summary.json (a value of ``DROP`` removes the field)."""
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    for key, value in changes.items():
        if value is DROP:
            summary.pop(key, None)
        else:
            summary[key] = value
    path.write_text(json.dumps(summary))


RunFactory = Callable[..., Path]


def make_run(
    root: Path,
    *,
    name: str = "r1",
    objective: str = "accuracy",
    summary: str = "full",
    with_journal: bool = True,
    with_trials: bool = True,
    schema: str = "new",
) -> Path:
    """Write a run folder under ``root``. ``summary``: "full", "null_student" or "missing".

    ``schema``: "new" writes what the current final stage writes (95 % CI and verdict, teacher check,
    size bound, augmentation, the baseline's own recipe, the gain curve); "old" what runs made before
    it wrote (``kd_gain_std``, none of those fields)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    trials = _trials(random.Random(0))
    records = [r for r, _ in trials]
    spec = {
        "run_name": name, "budget": len(records), "dataset": "digits", "teacher": "resnet-large",
        "epochs": EPOCHS, "objective": objective, "sampler": "tpe", "scheduler": "asha", "seed": 0,
    }  # fmt: skip
    (run_dir / "spec.json").write_text(json.dumps(spec))
    if with_journal:
        _write_journal(run_dir / "optuna.journal", trials, pareto=objective == "pareto")
    if with_trials:
        (run_dir / "trials.json").write_text(json.dumps(records, indent=1))
    if summary != "missing":
        data = _summary(records, objective, null_student=summary == "null_student", schema=schema)
        (run_dir / "summary.json").write_text(json.dumps(data, indent=1))
    return run_dir


@pytest.fixture
def run_factory(tmp_path: Path) -> RunFactory:
    """``run_factory(**options)`` -> a fresh run folder (see ``make_run``)."""
    counter = iter(range(1000))

    def factory(**options: Any) -> Path:
        options.setdefault("name", f"r{next(counter)}")
        return make_run(tmp_path / "results", **options)

    return factory


@pytest.fixture(scope="session")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full run folder with its report already built (shared by the read-only tests)."""
    from reports import build

    run_dir = make_run(tmp_path_factory.mktemp("results"))
    build(run_dir)
    return run_dir
