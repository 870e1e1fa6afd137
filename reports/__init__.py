"""What the user sees: ``report.html`` and ``summary.md`` built from a run folder.

    >>> from reports import build
    >>> build("results/r1")          # -> Path("results/r1/report.html")

or ``python -m reports results/r1``. Only plotly and optuna are needed (no torch, no ray).
"""

from reports.build import build, figure_sections, render_html
from reports.figures import (
    accuracy_vs_params_data,
    comparison_data,
    concurrency_steps,
    draw_accuracy_vs_params,
    draw_comparison,
    draw_final_candidates,
    draw_gain_curve,
    draw_learning_curves,
    draw_timeline,
    final_candidates_data,
    gain_curve_data,
    learning_curves_data,
    max_concurrency,
    pareto_front,
    timeline_data,
)
from reports.run import RunFolderError, RunRecords, Trial, load_run
from reports.text import (
    KdResult,
    kd_result,
    kd_sentence,
    setup_facts,
    summary_markdown,
    teacher_check,
    verdict_sentence,
)

__all__ = [
    "KdResult",
    "RunFolderError",
    "RunRecords",
    "Trial",
    "accuracy_vs_params_data",
    "build",
    "comparison_data",
    "concurrency_steps",
    "draw_accuracy_vs_params",
    "draw_comparison",
    "draw_final_candidates",
    "draw_gain_curve",
    "draw_learning_curves",
    "draw_timeline",
    "figure_sections",
    "final_candidates_data",
    "gain_curve_data",
    "kd_result",
    "kd_sentence",
    "learning_curves_data",
    "load_run",
    "max_concurrency",
    "pareto_front",
    "render_html",
    "setup_facts",
    "summary_markdown",
    "teacher_check",
    "timeline_data",
    "verdict_sentence",
]
