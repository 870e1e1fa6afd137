"""What a run folder holds: file names, the trial states of ``trials.json`` and the schema version.

    results/<run>/
        spec.json          the validated flags (SearchSpec.to_dict); a rerun must match it to resume
        teacher_check.json the teacher check of the run's first start, reused when it resumes
        experiments.json   the Ray Tune experiments of the run and the trials each was given
        trials.json        one record per trial: config, curve, state, node, timing, error
        trials.csv         the same trials, one row each (outcome columns, then param_<name>)
        optuna.journal     an Optuna JournalStorage study derived from trials.json
        summary.json       the search's and the final stage's results (carries SCHEMA_VERSION)
        report.html        plotly report; summary.md its text
        baseline/          the baseline's own search: a run folder of the same layout
        recipe/            the recipe phase's search on the best architecture: a run folder of the same layout
        final/             the final stage's finished trainings (tuning.seed_store), read back by a rerun
        <experiment>/      Ray Tune's own experiment folders (tune, tune-2, ...)
    results/.<run>.lock    beside it: the lock of the driver running it (runfolder._lock), never removed
"""

SCHEMA_VERSION = 2

SPEC_FILE = "spec.json"
TEACHER_CHECK_FILE = "teacher_check.json"
EXPERIMENTS_FILE = "experiments.json"
TRIALS_FILE = "trials.json"
TRIALS_CSV_FILE = "trials.csv"
JOURNAL_FILE = "optuna.journal"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
SUMMARY_MD_FILE = "summary.md"
BASELINE_FOLDER = "baseline"
RECIPE_FOLDER = "recipe"
FINAL_FOLDER = "final"  # the final stage's finished trainings, read back by a rerun

STUDY_NAME = "kdsearch"

# A trial's state in trials.json: ran its epochs, stopped early by the scheduler, failed, or still running
# (only in a run that was interrupted).
COMPLETE, STOPPED, FAILED, RUNNING = "COMPLETE", "STOPPED", "FAILED", "RUNNING"
