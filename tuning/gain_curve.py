"""Where distillation pays: the student sizes the final stage measures the KD gain at, and their recipes.

The sizes come from the search's Pareto front (validation accuracy against parameters, all under the
size bound; other trials' sizes fill in when the front has too few), spread evenly on a log scale from
the smallest to the largest, with the winner's architecture always among them.

At every size both arms train with the baseline's tuned optimisation recipe (lr, weight decay, batch
size, augmentation: found without a teacher, so it favours neither arm), and the distilled arm adds
the winner's KD terms. The teacher's signal is then the only difference, and a recipe tuned for one
size (a learning rate, say) cannot decide the comparison at another.
"""

from __future__ import annotations

import math
from typing import Any

from spaces import STANDARD_RECIPE

Arch = tuple[str, int, int]  # (family, depth, width)
ARCH_KEYS = ("family", "depth", "width")
KD_KEYS = ("alpha", "temperature", "feature_loss", "beta", "distill_interval", "init_from_teacher")
OPTIMISATION_KEYS = ("lr", "weight_decay", "batch_size")
# The textbook KD terms (the standard recipe's: Hinton et al. 2015's soft targets at T = 4 carrying most of
# the weight, no feature loss, every step distilled): the yardstick for what the recipe search bought.
TEXTBOOK_KD_TERMS: dict[str, Any] = {"beta": 0.0, **{key: STANDARD_RECIPE[key] for key in KD_KEYS
                                                     if key in STANDARD_RECIPE}}


def arch_of(config: dict[str, Any]) -> Arch:
    """The (family, depth, width) of a trial configuration (or of a model's ``arch``)."""
    return config["family"], int(config["depth"]), int(config["width"])


def arch_text(arch: Arch) -> str:
    """``(family, depth, width)`` as ``summary.json`` and the log write an architecture."""
    return f"{arch[0]} depth {arch[1]} width {arch[2]}"


def with_arch(config: dict[str, Any], arch: Arch, teacher_family: str | None) -> dict[str, Any]:
    """``config`` for another architecture; inheriting teacher weights stays only within the teacher's family."""
    changed = {**config, **dict(zip(ARCH_KEYS, arch, strict=True))}
    if arch[0] != teacher_family:
        changed.pop("init_from_teacher", None)
    return changed


def curve_recipes(kd_config: dict[str, Any], baseline_config: dict[str, Any], arch: Arch,
                  teacher_family: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (distilled, baseline) configurations at ``arch``: the baseline's recipe, plus the KD terms."""
    baseline = with_arch(baseline_config, arch, None)
    kd_terms = {key: kd_config[key] for key in KD_KEYS if key in kd_config}
    return with_arch({**baseline, **kd_terms}, arch, teacher_family), baseline


def textbook_recipe(kd_config: dict[str, Any], baseline_config: dict[str, Any]) -> dict[str, Any]:
    """``kd_config``'s student trained the textbook way: the textbook KD terms with the baseline's tuned lr,
    weight decay and batch size, and the dataset's default augmentation.

    Against the winner (same architecture, same seeds) it answers whether the searched recipe beat the one
    everybody starts from. The optimisation settings are the baseline's, found without a teacher, so neither
    arm's lr or batch size was tuned for this comparison; augmentation is the dataset's default (what a
    textbook run uses), not the baseline's choice, which was made for training without a teacher.
    """
    optimisation = {key: baseline_config[key] for key in OPTIMISATION_KEYS if key in baseline_config}
    return {**dict(zip(ARCH_KEYS, arch_of(kd_config), strict=True)), **optimisation, **TEXTBOOK_KD_TERMS}


def spread_by_size(sizes: list[int], count: int, keep: int) -> list[int]:
    """Indices of up to ``count`` entries of ``sizes`` (increasing, distinct) spread evenly on a log scale.

    Index ``keep`` is always chosen, then the smallest and the largest (as far as ``count`` allows);
    the others are the entries nearest to evenly spaced log-sizes. Returned in increasing order.
    """
    if count >= len(sizes):
        return list(range(len(sizes)))
    chosen = {keep}
    for end in (0, len(sizes) - 1):
        if len(chosen) < count:
            chosen.add(end)
    low, high = math.log(sizes[0]), math.log(sizes[-1])
    targets = [low + (high - low) * step / (count - 1) for step in range(1, count - 1)]
    # The targets farthest from what is chosen are the gaps that matter most.
    for target in sorted(targets, key=lambda t: min(abs(t - math.log(sizes[i])) for i in chosen), reverse=True):
        if len(chosen) >= count:
            break
        free = [i for i in range(len(sizes)) if i not in chosen]
        chosen.add(min(free, key=lambda i: abs(math.log(sizes[i]) - target)))
    return sorted(chosen)


def curve_architectures(front: list[dict[str, Any]], others: list[dict[str, Any]], winner: Arch, winner_params: int,
                        count: int) -> list[Arch]:
    """Up to ``count`` distinct architectures of the Pareto ``front`` records plus the winner, by size;
    the ``others`` records (the rest of the search) add sizes when the front has fewer than ``count``."""
    sizes: dict[Arch, int] = {arch_of(record["config"]): int(record["params"]) for record in front}
    sizes[winner] = winner_params
    if len(sizes) < count:
        sizes |= {arch_of(r["config"]): int(r["params"]) for r in others if arch_of(r["config"]) not in sizes}
    ordered = sorted(sizes, key=lambda arch: (sizes[arch], arch))
    picked = spread_by_size([sizes[arch] for arch in ordered], count, ordered.index(winner))
    return [ordered[index] for index in picked]
