"""What one trial does, in plain PyTorch: data, models, KD losses, teachers, the distillation loop.

Usable without Ray or Optuna (a benchmark, a notebook or a GPU check imports it alone)::

    from trainers import DistillConfig, distill, evaluate, get_teacher, load_dataset, Teacher
"""

from trainers.data import AUGMENTATIONS, DATASETS, DatasetError, DatasetInfo, TensorSplits, load_dataset
from trainers.device import pick_device
from trainers.distill import (
    DistillConfig,
    DistillResult,
    EpochReport,
    NonFiniteLossError,
    distill,
    evaluate,
    finetune,
    initial_student,
)
from trainers.ensemble import LogitEnsemble, ensemble_teacher
from trainers.export import export_model, load_exported, load_program
from trainers.losses import feature_loss_names, get_feature_loss, register_feature_loss
from trainers.measure import ModelCost, measure
from trainers.models import (
    build_student,
    build_student_for,
    build_teacher,
    can_init_from_teacher,
    count_parameters,
    input_size_for,
    register_student,
    student_families,
    student_family_bounds,
    student_flops,
    student_parameter_count,
    teacher_family,
    teacher_names,
)
from trainers.teacher import Teacher
from trainers.teacher_sources import TeacherSource, load_teacher, load_teacher_checkpoint
from trainers.teacher_training import (
    TeacherCheckpointError,
    TeacherRecipe,
    TeacherResult,
    TeacherTrainingStopped,
    get_teacher,
)
from trainers.teacher_views import ViewLogitsStopped

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "DatasetError",
    "DatasetInfo",
    "DistillConfig",
    "DistillResult",
    "EpochReport",
    "LogitEnsemble",
    "ModelCost",
    "NonFiniteLossError",
    "Teacher",
    "TeacherCheckpointError",
    "TeacherRecipe",
    "TeacherResult",
    "TeacherSource",
    "TeacherTrainingStopped",
    "TensorSplits",
    "ViewLogitsStopped",
    "build_student",
    "build_student_for",
    "build_teacher",
    "can_init_from_teacher",
    "count_parameters",
    "distill",
    "ensemble_teacher",
    "pick_device",
    "evaluate",
    "export_model",
    "feature_loss_names",
    "finetune",
    "get_feature_loss",
    "get_teacher",
    "input_size_for",
    "initial_student",
    "load_dataset",
    "load_exported",
    "load_program",
    "load_teacher",
    "load_teacher_checkpoint",
    "measure",
    "register_feature_loss",
    "register_student",
    "student_families",
    "student_family_bounds",
    "student_flops",
    "student_parameter_count",
    "teacher_family",
    "teacher_names",
]
