"""The report's own plotly figures: each is a pure data builder plus a drawer.

Builders (``*_data``, ``pareto_front``, ``concurrency_steps``) take run records and return plain
dataclasses; they hold all the logic and are unit-tested on hand-made records. Drawers (``draw_*``)
only turn that data into a ``plotly.graph_objects.Figure``.

Accuracies stay fractions in [0, 1]; axes show them as percentages through ``tickformat``.

One private module per figure family holds its builder and its drawer together (``_accuracy_size``,
``_learning_curves``, ``_comparison``, ``_gain_curve``, ``_rounds``, ``_final_candidates``, ``_timeline``);
``_style`` holds what they share (colours, ``format_params``, the seed dots).
"""

from reports.figures._accuracy_size import (
    SIZE_AXES,
    AccuracyParamsData,
    ScatterPoint,
    accuracy_vs_params_data,
    draw_accuracy_vs_params,
)
from reports.figures._comparison import ComparisonBar, comparison_data, draw_comparison
from reports.figures._final_candidates import CandidateBar, draw_final_candidates, final_candidates_data
from reports.figures._gain_curve import GainCurveData, GainPoint, draw_gain_curve, gain_curve_data
from reports.figures._learning_curves import CurveSeries, draw_learning_curves, learning_curves_data
from reports.figures._rounds import RoundPoint, RoundsData, draw_rounds, rounds_data
from reports.figures._style import (
    FAILED_COLOR,
    FAMILY_COLORS,
    OTHER_STATE_COLOR,
    STATE_COLORS,
    UNKNOWN_VERDICT_COLOR,
    VERDICT_COLORS,
    family_color,
    format_params,
)
from reports.figures._timeline import (
    TimelineBar,
    TimelineData,
    concurrency_steps,
    draw_timeline,
    max_concurrency,
    timeline_data,
)

__all__ = [
    "AccuracyParamsData",
    "CandidateBar",
    "ComparisonBar",
    "CurveSeries",
    "FAILED_COLOR",
    "FAMILY_COLORS",
    "GainCurveData",
    "GainPoint",
    "OTHER_STATE_COLOR",
    "RoundPoint",
    "RoundsData",
    "SIZE_AXES",
    "STATE_COLORS",
    "ScatterPoint",
    "TimelineBar",
    "TimelineData",
    "UNKNOWN_VERDICT_COLOR",
    "VERDICT_COLORS",
    "accuracy_vs_params_data",
    "comparison_data",
    "concurrency_steps",
    "draw_accuracy_vs_params",
    "draw_comparison",
    "draw_final_candidates",
    "draw_gain_curve",
    "draw_learning_curves",
    "draw_rounds",
    "draw_timeline",
    "family_color",
    "final_candidates_data",
    "format_params",
    "gain_curve_data",
    "learning_curves_data",
    "max_concurrency",
    "rounds_data",
    "timeline_data",
]
