"""The run folder ``results/<run>/``, defined once: its file names, trial states, schema version, the
atomic writer and reader every layer uses, and the statistics both its writer (``tuning``) and its
reader (``reports``) derive from the records (the Pareto front, the paired gain and its verdict).

Torch-, Ray- and Optuna-free, so any layer may import it.
"""

from runfolder._files import atomic_write, atomic_write_json, atomic_write_text, read_cache_entry, read_json
from runfolder._layout import (
    BASELINE_FOLDER,
    COMPLETE,
    EXPERIMENTS_FILE,
    FAILED,
    JOURNAL_FILE,
    RECIPE_FOLDER,
    REPORT_FILE,
    RUNNING,
    SCHEMA_VERSION,
    SPEC_FILE,
    STOPPED,
    STUDY_NAME,
    SUMMARY_FILE,
    SUMMARY_MD_FILE,
    TEACHER_CHECK_FILE,
    TRIALS_CSV_FILE,
    TRIALS_FILE,
)
from runfolder._lock import RunLocked, check_not_running, hold_run_lock, lock_path
from runfolder._stats import (
    HELPS,
    HURTS,
    NO_DIFFERENCE,
    VERDICTS,
    GainVerdict,
    format_points,
    interval_words,
    mean_std,
    paired_gain,
    pareto_front,
    resolution_points,
    verdict,
)

__all__ = [
    "BASELINE_FOLDER",
    "COMPLETE",
    "EXPERIMENTS_FILE",
    "FAILED",
    "GainVerdict",
    "HELPS",
    "HURTS",
    "JOURNAL_FILE",
    "NO_DIFFERENCE",
    "RECIPE_FOLDER",
    "REPORT_FILE",
    "RUNNING",
    "RunLocked",
    "SCHEMA_VERSION",
    "SPEC_FILE",
    "STOPPED",
    "STUDY_NAME",
    "SUMMARY_FILE",
    "SUMMARY_MD_FILE",
    "TEACHER_CHECK_FILE",
    "TRIALS_CSV_FILE",
    "TRIALS_FILE",
    "VERDICTS",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_not_running",
    "format_points",
    "hold_run_lock",
    "interval_words",
    "lock_path",
    "mean_std",
    "paired_gain",
    "pareto_front",
    "read_cache_entry",
    "read_json",
    "resolution_points",
    "verdict",
]
