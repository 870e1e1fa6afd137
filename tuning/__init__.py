"""How the search runs: Ray Tune + Optuna over ``trainers`` trials, resume, and the final stage.

``search.py`` builds a ``SearchSpec`` with ``build_spec`` and calls ``run``.
"""

import os

# Read by Ray Tune when a run starts; set here, before ray loads. Its console output is replaced by
# kdsearch's progress lines.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Snapshot the experiment state at every controller step, so a driver killed at any moment resumes
# with the trials it had (Ray's default snapshots every 10 s or more and loses what ended since).
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")

from tuning.run import RunOutcome, SearchInterrupted, run  # noqa: E402
from tuning.spec import SearchSpec, UserError, build_spec  # noqa: E402

__all__ = ["RunOutcome", "SearchInterrupted", "SearchSpec", "UserError", "build_spec", "run"]
