"""Models: the registry, kdsearch's student families and teachers, and adapters for a user's own teacher.

Every model is a :class:`KDModel`: ``forward(x)`` returns logits and ``forward_features(x)`` returns
``(logits, stage_features)`` where ``stage_features`` holds one ``(N, C, H, W)`` map per stage, in order.

| module | job |
|---|---|
| ``_registry`` | ``KDModel``, ``@register_student`` / ``@register_teacher``, the builders, ``model.arch`` |
| ``students`` | the built-in student families ``cnn``, ``resnet``, ``mobilenet`` |
| ``torchvision_students`` | torchvision's MobileNetV2/V3, ShuffleNetV2, ResNet, EfficientNet as student families |
| ``teachers`` | kdsearch's own teachers (``cnn-large``, ..., ``resnet18``, ``mobilenet_v2``) |
| ``_init_from_teacher`` | parameter distillation between members of one family |
| ``foreign`` | :class:`ForeignTeacher`: any user model behind the teacher's preprocessing and feature taps |

New architectures plug in with decorators, as in timm::

    @register_student("mynet", depth=(1, 4), width=(8, 64))
    def mynet(depth: int, width: int, in_channels: int, num_classes: int) -> KDModel: ...

A registered family is searchable with its default depth and width ranges (the search layer builds the
default space from :func:`student_family_bounds`); nothing in ``spaces/`` names it. One registered with
``default_search=False`` (the torchvision families) is searched only when a ``--space`` file names it.
"""

from trainers.models import students, teachers, torchvision_students  # noqa: F401  (registers the models)
from trainers.models._init_from_teacher import init_from_teacher
from trainers.models._registry import (
    DEFAULT_DEPTH,
    DEFAULT_WIDTH,
    DOWNSAMPLING_STEM_FROM_PX,
    KDModel,
    UnknownModelError,
    build_from_arch,
    build_student,
    build_student_for,
    build_teacher,
    can_init_from_teacher,
    count_flops,
    count_parameters,
    input_size_for,
    register_student,
    register_teacher,
    stem_stride_for,
    student_builder,
    student_families,
    student_family_bounds,
    student_flops,
    student_parameter_count,
    teacher_family,
    teacher_names,
    teacher_parameter_count,
)
from trainers.models.foreign import ForeignTeacher, TeacherPreprocessing
from trainers.models.students import STUDENT_FAMILIES

__all__ = [
    "DEFAULT_DEPTH",
    "DEFAULT_WIDTH",
    "DOWNSAMPLING_STEM_FROM_PX",
    "STUDENT_FAMILIES",
    "ForeignTeacher",
    "KDModel",
    "TeacherPreprocessing",
    "UnknownModelError",
    "build_from_arch",
    "build_student",
    "build_student_for",
    "build_teacher",
    "can_init_from_teacher",
    "count_flops",
    "count_parameters",
    "init_from_teacher",
    "input_size_for",
    "register_student",
    "register_teacher",
    "stem_stride_for",
    "student_builder",
    "student_families",
    "student_family_bounds",
    "student_flops",
    "student_parameter_count",
    "teacher_family",
    "teacher_names",
    "teacher_parameter_count",
]
