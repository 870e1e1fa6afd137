"""``bench/bench_gain_curve.py``: each arm's configuration at each curve size, and the reproduction check."""

from __future__ import annotations

from tests.bench.scripts import load_bench_script
from trainers import DistillConfig

bench = load_bench_script("bench_gain_curve")

SUMMARY = {
    "best_config": {"family": "cnn", "depth": 2, "width": 5, "alpha": 0.14, "temperature": 2.2, "feature_loss": "none",
                    "lr": 0.37, "weight_decay": 3.7e-4, "batch_size": 64, "distill_interval": 1,
                    "init_from_teacher": True},
    "gain_curve_recipe": {"recipe": {"lr": 0.255, "weight_decay": 4.8e-4, "batch_size": 128, "augment": False},
                          "kd_terms": {"alpha": 0.14, "temperature": 2.2, "feature_loss": "none",
                                       "distill_interval": 1, "init_from_teacher": True}},
    "gain_curve": [{"arch_config": {"family": "resnet", "depth": 1, "width": 2}},
                   {"arch_config": {"family": "cnn", "depth": 2, "width": 5}}],
}


def test_every_arm_trains_on_the_baseline_recipe_and_only_the_kd_terms_differ() -> None:
    configs = bench.arm_configs(SUMMARY, teacher_family="cnn")
    assert list(configs) == [("resnet", 1, 2), ("cnn", 2, 5)]
    for (family, depth, width), arms in configs.items():
        assert sorted(arms) == sorted(["baseline", *bench.ARMS])
        for config in arms.values():
            assert (config["family"], config["depth"], config["width"]) == (family, depth, width)
            assert (config["lr"], config["weight_decay"], config["batch_size"]) == (
                0.255, 4.8e-4, 128)  # the baseline's recipe, not the winner's lr 0.37 and batch 64
            DistillConfig.from_mapping(config)  # each is a whole training configuration
        assert arms["baseline"]["alpha"] == 0.0 and "temperature" not in arms["baseline"]
        assert (arms["winner's terms"]["alpha"], arms["winner's terms"]["temperature"]) == (0.14, 2.2)
        assert (arms["textbook terms"]["alpha"], arms["textbook terms"]["temperature"]) == (0.9, 4.0)
        assert arms["textbook terms"].get("init_from_teacher", False) is False
        assert [arms[name]["augment"] for name in ("baseline", "winner's terms", "textbook terms")] == [False] * 3
        # The textbook arm's recipe: the same terms with the dataset's default augmentation (no augment key).
        assert arms["textbook recipe"] == {key: value for key, value in arms["textbook terms"].items()
                                           if key not in ("augment", "init_from_teacher")} | {
                                               "init_from_teacher": False}
    # Teacher weights are inherited within the teacher's family only, as in the final stage's curve.
    assert "init_from_teacher" not in configs[("resnet", 1, 2)]["winner's terms"]
    assert configs[("cnn", 2, 5)]["winner's terms"]["init_from_teacher"] is True


def test_the_run_is_reproduced_only_when_both_arms_match_on_its_own_seeds() -> None:
    entry = {"seeds": [1, 2], "baseline_test_accuracies": [0.95, 0.96], "kd_test_accuracies": [0.97, 0.98]}
    seeds = [1, 2, 3]
    assert bench.reproduces(entry, seeds, [0.95, 0.96, 0.90], [0.97, 0.98, 0.99])
    assert not bench.reproduces(entry, seeds, [0.95, 0.96, 0.90], [0.97, 0.975, 0.99])
    assert not bench.reproduces(entry, seeds, [0.951, 0.96, 0.90], [0.97, 0.98, 0.99])
    assert not bench.reproduces(entry, [2, 3], [0.96, 0.90], [0.98, 0.99])  # seed 1 was not trained
