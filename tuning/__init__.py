"""How the search runs: Ray Tune + Optuna over ``trainers`` trials, resume, and the final stage.

``search.py`` builds a ``SearchSpec`` with ``build_spec`` and calls ``run``.
"""

from tuning.disk_full import ResultsDiskFull
from tuning.run import RunOutcome, SearchFailed, SearchInterrupted, run
from tuning.spec import SearchSpec, UserError, build_spec

__all__ = ["ResultsDiskFull", "RunOutcome", "SearchFailed", "SearchInterrupted", "SearchSpec", "UserError",
           "build_spec", "run"]
