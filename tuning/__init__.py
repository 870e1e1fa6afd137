"""How the search runs: Ray Tune + Optuna over ``trainers`` trials, resume, and the final stage.

``search.py`` builds a ``SearchSpec`` with ``build_spec`` and calls ``run``.
"""

import os

# Ray's own console output is replaced by kdsearch's progress lines; these must be set before ray loads.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from tuning.run import RunOutcome, run  # noqa: E402
from tuning.spec import SearchSpec, UserError, build_spec  # noqa: E402

__all__ = ["RunOutcome", "SearchSpec", "UserError", "build_spec", "run"]
