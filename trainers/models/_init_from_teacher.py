"""Parameter distillation: a student starts from depth- and width-sliced weights of a same-family teacher.

Members of one family use the same module names (``stem``, ``stages.<stage>.<block>``, ``head``), so a
small member's state_dict is, name by name, a leading slice of a large member's: the copy is a plain
``teacher_tensor[:s0, :s1, ...]``.
"""

from __future__ import annotations

import torch

from trainers.models._registry import KDModel


def init_from_teacher(student: KDModel, teacher: KDModel) -> int:
    """Copy depth- and width-sliced teacher weights into ``student``; return the number of tensors copied.

    For every state_dict entry (parameters and buffers, BN running statistics included) present under
    the same name in both models, the student receives ``teacher_tensor[:s0, :s1, ...]`` where
    ``s0, s1, ...`` is the student's shape: the first blocks of each stage, the first channels of each
    layer. Entries the teacher lacks (deeper students) or has smaller in some dimension (wider students)
    keep their initialisation.

    Raises:
        ValueError: the two models are not members of the same student family.
    """
    student_family = student.arch.get("family")
    source_family = teacher.arch.get("family")
    if student_family is None or student_family != source_family:
        raise ValueError(
            f"cannot initialise a {student_family!r} student from a teacher of family {source_family!r}: "
            "parameter distillation needs both in the same student family"
        )
    teacher_state = teacher.state_dict()
    copied = 0
    with torch.no_grad():
        for name, student_tensor in student.state_dict().items():
            teacher_tensor = teacher_state.get(name)
            if teacher_tensor is None or teacher_tensor.dim() != student_tensor.dim():
                continue
            if any(s > t for s, t in zip(student_tensor.shape, teacher_tensor.shape, strict=True)):
                continue
            leading = tuple(slice(0, size) for size in student_tensor.shape)
            # state_dict tensors share storage with the module, so copy_ writes into the student.
            student_tensor.copy_(teacher_tensor[leading])
            copied += 1
    return copied
