"""The final stage's seed runs: one configuration trained (and finetuned) with one seed, as a Ray task.

``SeedTasks`` launches them with the data and the teacher in the object store once; a search trial that ran
every epoch is its configuration's seed ``--seed`` run (``searched_run``) instead of being trained again, and a
training asked for twice (``training_key``: e.g. the gain curve's distilled arm at the winner's size is the
textbook arm when the winner's KD terms are the textbook's) runs once.
The final stage (``tuning.final``) and the repeated rounds (``tuning.rounds``) build on these.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch

from runfolder import COMPLETE
from trainers import DistillConfig, Teacher, TensorSplits, distill, evaluate, finetune, pick_device
from trainers.models import build_from_arch, build_student_for
from tuning.seed_store import SeedRunStore, run_digest
from tuning.spec import SearchSpec
from tuning.stop_signal import check_stop
from tuning.trainable import NODE_ID, NODE_IP, STATE_FILE, read_trial_state

FINETUNE_LR_FACTOR = 0.1
# The final stage's trainings say how far they are at most this often: on a 10,000-image folder its waits
# last minutes each, on digits a few seconds (one line or none).
PROGRESS_EVERY_S = 15.0
# A wait on the final stage's tasks looks at least this often whether a signal asked it to stop
# (``tuning.stop_signal.check_stop``: SIGTERM, SIGUSR1 or Ctrl-C stops the final stage).
WAKE_EVERY_S = 1.0

Log = Callable[[str], None]


@dataclass
class SeedRun:
    """One re-training of one configuration with one seed (weights on CPU)."""

    config: dict[str, Any]
    seed: int
    val_accuracy: float
    state_dict: dict[str, torch.Tensor]
    arch: dict[str, Any]
    finetuned: bool = False
    node: dict[str, str] | None = None  # the Ray node that trained it: {"node_id", "node_ip"}


def train_seed(config: dict[str, Any], seed: int, epochs: int, data: TensorSplits, teacher: Teacher | None,
               threads: int) -> SeedRun:
    """Train ``config`` with ``seed`` for ``epochs`` (a Ray task of the final stage)."""
    torch.set_num_threads(threads)
    device = pick_device()
    data = data.to(device)
    distill_config = DistillConfig.from_mapping({**config, "epochs": epochs, "seed": seed})
    teacher = teacher.to(device) if teacher is not None and distill_config.uses_teacher else None
    # Only the last epoch's validation accuracy is read (to pick the winner): the others are not computed.
    result = distill(distill_config, data, teacher, validate_each_epoch=False)
    return SeedRun(config, seed, result.last_val_accuracy, cpu_state(result.model), result.model.arch,
                   finetuned=False, node=this_node())


def finetune_seed(run: SeedRun, epochs: int, data: TensorSplits, threads: int) -> SeedRun:
    """Finetune a trained run on hard labels at a tenth of its lr; the finetuned weights are kept only
    if validation accuracy does not drop (a Ray task of the final stage)."""
    torch.set_num_threads(threads)
    data = data.to(pick_device())
    config = DistillConfig.from_mapping({**run.config, "seed": run.seed})
    model = seed_model(run).to(data.train_x.device)
    tuned = finetune(model, data, epochs=epochs, lr=config.lr * FINETUNE_LR_FACTOR, weight_decay=config.weight_decay,
                     batch_size=config.batch_size, seed=run.seed, validate_each_epoch=False)
    tuned_accuracy = tuned.last_val_accuracy
    if tuned_accuracy >= run.val_accuracy:
        return SeedRun(run.config, run.seed, tuned_accuracy, cpu_state(model), run.arch, finetuned=True,
                       node=run.node)
    return run


def searched_run(record: dict[str, Any], spec: SearchSpec, data: TensorSplits) -> SeedRun | None:
    """The search's own training of ``record``'s configuration, as the final stage's run with seed ``--seed``.

    A trial that ran every epoch trained what ``train_seed(config, spec.seed, spec.epochs, ...)`` would
    train (the same configuration, seed, epochs and threads; its per-epoch validation changes no weight:
    bit for bit the same on a CPU) and saved its last state; training it again would repeat that work.
    ``None`` when the trial stopped early (the recorder keeps a checkpoint for complete trials only), or
    its state is missing or unreadable here (then it is trained, and the message says so).
    """
    if record["state"] != COMPLETE or not record.get("checkpoint"):
        return None
    state = read_trial_state(Path(record["checkpoint"]) / STATE_FILE, then="training that seed instead")
    if state is None or state["epoch"] != spec.epochs:
        return None
    config = record["config"]
    arch = build_student_for(config["family"], config["depth"], config["width"], data.info.input_shape,
                             data.info.num_classes).arch
    node = {"node_id": record[NODE_ID], "node_ip": record[NODE_IP]} if record.get(NODE_ID) else None
    return SeedRun(config, spec.seed, record["val_accuracy"], state["student"], arch, finetuned=False, node=node)


def training_key(config: dict[str, Any], seed: int, epochs: int, data: TensorSplits) -> DistillConfig:
    """What decides the weights ``train_seed(config, seed, epochs, data, ...)`` returns: configurations with
    equal keys train the same student (``DistillConfig`` fills in what a configuration leaves out, and an
    unset augmentation is the dataset's default, resolved here)."""
    distill_config = DistillConfig.from_mapping({**config, "epochs": epochs, "seed": seed})
    return dataclasses.replace(distill_config, augment=distill_config.augments(data))


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights on the CPU (what a ``SeedRun`` carries back from its task)."""
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


def task_options(spec: SearchSpec, gpus_per_task: float) -> dict[str, Any]:
    """Ray options of every final-stage task: a trial's resources, and ``--max-failures`` retries.

    Ray re-runs a task whose worker or node died (never one that raised: ``retry_exceptions`` stays off),
    elsewhere when its node is lost, and also re-runs a finished task whose result was only on a lost node when
    the result is needed; ``ray.get`` returns one result per task either way, so nothing is counted twice.
    """
    return {"num_cpus": spec.cpus_per_trial, "num_gpus": gpus_per_task, "max_retries": spec.max_failures}


class SeedTasks:
    """Launches ``train_seed`` and ``finetune_seed`` as Ray tasks, data and teacher in the object store once.

    A training asked for again (an equal ``training_key``) is not launched again: the caller gets the first
    launch's reference, whose ``SeedRun.config`` is the first caller's (the same training, written as it was).
    With a ``store``, every training and finetuning launched here is written there once it has finished (seen
    by any ``get``), and one an earlier attempt wrote is read back instead of launched (``self.kept``).
    """

    def __init__(self, spec: SearchSpec, data: TensorSplits, teacher: Teacher, gpus_per_task: float,
                 log: Log | None = None, store: SeedRunStore | None = None) -> None:
        self.spec = spec
        self.log = log
        self.store = store
        self.unsaved: dict[Any, str] = {}  # reference of a launched task -> the digest its run is stored under
        self.kept = 0  # trainings and finetunings read back from the store
        self.seeds = [spec.seed + index for index in range(spec.final_seeds)]
        self.options = task_options(spec, gpus_per_task)
        self.train_remote = ray.remote(**self.options)(train_seed)
        self.finetune_remote = ray.remote(**self.options)(finetune_seed)
        self.data = data
        self.from_search: list[str] = []  # trials whose own training is a seed run (``launch_searched``)
        self.data_ref, self.teacher_ref = ray.put(data), ray.put(teacher)
        self.threads = max(1, int(spec.cpus_per_trial))
        self.launched: dict[DistillConfig, Any] = {}  # training_key -> the reference of its run
        self.trainings = 0  # training tasks launched (a training asked for twice counts once, a stored one not)

    def launch(self, config: dict[str, Any], seeds: list[int] | None = None) -> list[Any]:
        """One training task per seed (the final seeds by default); ``ray.get`` the list for the ``SeedRun`` s.
        A seed whose training was launched before (or taken from the search) gets that run's reference."""
        references = []
        for seed in self.seeds if seeds is None else seeds:
            key = training_key(config, seed, self.spec.epochs, self.data)
            if key not in self.launched:
                self.launched[key] = self._stored_or_launched(run_digest(key), functools.partial(
                    self.train_remote.remote, config, seed, self.spec.epochs, self.data_ref, self.teacher_ref,
                    self.threads), training=True)
            references.append(self.launched[key])
        return references

    def _stored_or_launched(self, digest: str, launch: Callable[[], Any], training: bool = False) -> Any:
        """A reference to the run stored under ``digest``, or to the task ``launch()`` starts (stored once done)."""
        fields = self.store.read(digest) if self.store is not None else None
        if fields is not None and set(fields) == {field.name for field in dataclasses.fields(SeedRun)}:
            self.kept += 1
            return ray.put(SeedRun(**fields))
        reference = launch()
        self.trainings += int(training)
        if self.store is not None:
            self.unsaved[reference] = digest
        return reference

    def launch_searched(self, record: dict[str, Any], seeds: list[int] | None = None) -> list[Any]:
        """``launch`` for a search trial's configuration, its seed ``--seed`` run taken from the trial itself
        where it can be (``searched_run``); ``self.from_search`` lists the trials it was taken from."""
        seeds = self.seeds if seeds is None else seeds
        searched = searched_run(record, self.spec, self.data) if seeds[0] == self.spec.seed else None
        if searched is None:
            return self.launch(record["config"], seeds)
        self.from_search.append(record["trial_id"])
        key = training_key(record["config"], searched.seed, self.spec.epochs, self.data)
        self.launched.setdefault(key, ray.put(searched))
        return [self.launched[key], *self.launch(record["config"], seeds[1:])]

    def finetune(self, runs: list[Any]) -> list[Any]:
        """Finetuning tasks for trained runs (``SeedRun`` s or their pending references); none at 0 epochs."""
        if self.spec.finetune_epochs == 0:
            return runs
        return [self._finetuned(run) for run in runs]

    def _finetuned(self, run: Any) -> Any:
        epochs = self.spec.finetune_epochs
        key = (training_key(run.config, run.seed, self.spec.epochs, self.data) if isinstance(run, SeedRun)
               else next((key for key, launched in self.launched.items() if launched == run), None))
        # None: a training not launched here (a later round's) is finetuned but not stored
        launch = functools.partial(self.finetune_remote.remote, run, epochs, self.data_ref, self.threads)
        return launch() if key is None else self._stored_or_launched(run_digest(key, epochs), launch)

    def wait(self, references: list[Any], what: str, every_s: float = PROGRESS_EVERY_S) -> None:
        """Wait for ``references``, saying every ``every_s`` seconds how many of them are done (``what``: the
        trainings waited for, e.g. "re-check trainings"). Meanwhile every run this launched is written to the
        store within a second of finishing, whichever wait it belongs to."""
        wait_for(references, what, self.log, every_s, self._on_wake)

    def get(self, references: list[Any], what: str, every_s: float = PROGRESS_EVERY_S) -> list[Any]:
        """``wait``, then ``ray.get(references)``."""
        return wait_with_progress(references, what, self.log, every_s, self._on_wake)

    @property
    def _on_wake(self) -> Callable[[], None] | None:
        return self._store_finished if self.store is not None else None

    def _store_finished(self) -> None:
        """Write each launched run that has finished and is not stored yet (waited for or not)."""
        if not self.unsaved or self.store is None:
            return
        finished, _ = ray.wait(list(self.unsaved), num_returns=len(self.unsaved), timeout=0)
        for reference in finished:
            digest = self.unsaved.pop(reference)
            try:
                run = ray.get(reference)
            except ray.exceptions.RayError:  # the wait it belongs to raises it
                continue
            self.store.write(digest, dataclasses.asdict(run))


def wait_with_progress(references: list[Any], what: str, log: Log | None, every_s: float = PROGRESS_EVERY_S,
                       on_wake: Callable[[], None] | None = None) -> list[Any]:
    """``wait_for``, then ``ray.get(references)``."""
    wait_for(references, what, log, every_s, on_wake)
    return ray.get(references)


def wait_for(references: list[Any], what: str, log: Log | None, every_s: float = PROGRESS_EVERY_S,
             on_wake: Callable[[], None] | None = None) -> None:
    """Wait until ``references`` are done, logging ``final stage: 7/12 re-check trainings done, 0:41 so far, about
    0:30 left`` each time ``every_s`` seconds have passed without a line; a wait shorter than that logs nothing.
    The wait wakes every ``WAKE_EVERY_S`` seconds and when they are all done: each time it raises what a signal
    asked for (``tuning.stop_signal.check_stop``) and calls ``on_wake()``.

    The estimate assumes the rest take as long as the ones that finished during this wait (not those done
    before it, e.g. runs taken from the search). A reference listed twice (one training shared by two arms)
    counts once.
    """
    unique = list(dict.fromkeys(references))  # ray.wait takes each reference once
    _, pending = ray.wait(unique, num_returns=len(unique), timeout=0)
    done_before, started = len(unique) - len(pending), time.perf_counter()  # e.g. runs taken from the search
    last_line = started
    while True:
        check_stop()
        if on_wake is not None:
            on_wake()
        if not pending:
            return
        until_line = max(0.0, last_line + every_s - time.perf_counter()) if log is not None else WAKE_EVERY_S
        timeout = min(WAKE_EVERY_S, until_line)
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        now = time.perf_counter()
        if log is not None and pending and now - last_line >= every_s:
            done, elapsed = len(unique) - len(pending), now - started
            finished_here = done - done_before
            left = f", about {_clock(elapsed / finished_here * len(pending))} left" if finished_here else ""
            log(f"final stage: {done}/{len(unique)} {what} done, {_clock(elapsed)} so far{left}")
            last_line = now


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def this_node() -> dict[str, str] | None:
    """The Ray node this task runs on (``None`` outside Ray, e.g. a direct call in a test)."""
    if not ray.is_initialized():
        return None
    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


def seed_model(run: SeedRun) -> torch.nn.Module:
    """``run``'s trained student, in eval mode."""
    model = build_from_arch(run.arch)
    model.load_state_dict(run.state_dict)
    return model.eval()


def seed_test_accuracy(run: SeedRun, data: TensorSplits) -> float:
    """``run``'s student's accuracy on the held-out test split."""
    return evaluate(seed_model(run), data.to("cpu").test_x, data.test_y.cpu())[0]
