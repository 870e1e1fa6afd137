"""What the user sees: ``report.html`` and ``summary.md`` built from a run folder.

    >>> from reports import build
    >>> build("results/r1")          # -> Path("results/r1/report.html")

or ``python -m reports results/r1``. Only plotly and optuna are needed (no torch, no ray). The figure and
text builders live in the private packages ``reports.figures`` (a module per figure family) and
``reports.text`` (a module per part of the story), and in ``reports.optuna_figures``; ``reports.run`` reads
the run folder.
"""

from reports.build import build
from reports.run import RunFolderError

__all__ = ["RunFolderError", "build"]
