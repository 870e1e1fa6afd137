"""The words of the report: facts pulled from the run records, formatted for people.

Everything here is pure (records in, strings or small dataclasses out), shared by ``report.html`` and
``summary.md`` so both tell the same story. The private modules each hold one part: ``_format`` the number
formats, ``_trials`` the search's counts, space, best configuration and status, ``_results`` the KD verdict and
the test results, ``_setup`` the run's setup facts, ``_markdown`` ``summary.md``.
"""

# The verdicts, for callers that read them next to the sentences (``from reports import text as T``).
from reports.run import HELPS, HURTS
from reports.text._format import (
    format_accuracy,
    format_duration,
    format_latency,
    format_points,
    format_value,
    points_per_test_image,
)
from reports.text._markdown import summary_markdown
from reports.text._results import (
    KdResult,
    ResultRow,
    finetune_sentence,
    gain_curve_markdown,
    kd_result,
    kd_sentence,
    result_rows,
    rounds_markdown,
    verdict_sentence,
)
from reports.text._setup import (
    MEMORISATION_GAP,
    STUDENT_AUGMENTATION,
    TEACHER_SOURCES,
    Fact,
    TeacherCheck,
    augmentation_text,
    baseline_recipe_text,
    recipe_search_text,
    setup_facts,
    size_bound_text,
    teacher_check,
    teacher_features_text,
    teacher_text,
    teacher_view_text,
)
from reports.text._trials import (
    PARAM_MEANING,
    PARAM_ORDER,
    BestConfig,
    Overview,
    SearchedParam,
    TrialCounts,
    best_config,
    best_so_far,
    ordered_params,
    overview,
    searched_space,
    status_sentence,
    trial_counts,
)

__all__ = [
    "BestConfig",
    "Fact",
    "HELPS",
    "HURTS",
    "KdResult",
    "MEMORISATION_GAP",
    "Overview",
    "PARAM_MEANING",
    "PARAM_ORDER",
    "ResultRow",
    "STUDENT_AUGMENTATION",
    "SearchedParam",
    "TEACHER_SOURCES",
    "TeacherCheck",
    "TrialCounts",
    "augmentation_text",
    "baseline_recipe_text",
    "best_config",
    "best_so_far",
    "finetune_sentence",
    "format_accuracy",
    "format_duration",
    "format_latency",
    "format_points",
    "format_value",
    "gain_curve_markdown",
    "kd_result",
    "kd_sentence",
    "ordered_params",
    "overview",
    "points_per_test_image",
    "recipe_search_text",
    "result_rows",
    "rounds_markdown",
    "searched_space",
    "setup_facts",
    "size_bound_text",
    "status_sentence",
    "summary_markdown",
    "teacher_check",
    "teacher_features_text",
    "teacher_text",
    "teacher_view_text",
    "trial_counts",
    "verdict_sentence",
]
