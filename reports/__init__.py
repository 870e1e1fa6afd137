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
    draw_learning_curves,
    draw_timeline,
    final_candidates_data,
    learning_curves_data,
    max_concurrency,
    pareto_front,
    timeline_data,
)
from reports.run import RunFolderError, RunRecords, Trial, load_run
from reports.text import kd_gain, kd_gain_sentence, summary_markdown

__all__ = [
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
    "draw_learning_curves",
    "draw_timeline",
    "figure_sections",
    "final_candidates_data",
    "kd_gain",
    "kd_gain_sentence",
    "learning_curves_data",
    "load_run",
    "max_concurrency",
    "pareto_front",
    "render_html",
    "summary_markdown",
    "timeline_data",
]
