"""Named starting spaces. ``default`` suits the embedded digits dataset and small images."""

from __future__ import annotations

from spaces._params import ChoiceParam, IntParam
from spaces._space import FamilyBounds, SearchSpace

# Students stay well under a fifth of the default teacher (resnet-large, 1.08M parameters): on 10
# classes the largest student here (resnet, depth 2, width 16) has about 175k parameters, the smallest about 6.5k.
STUDENT_FAMILY_BOUNDS: dict[str, FamilyBounds] = {
    "cnn": FamilyBounds(depth=IntParam(1, 2), width=IntParam(8, 24, step=8)),
    "resnet": FamilyBounds(depth=IntParam(1, 2), width=IntParam(8, 16, step=4)),
    "mobilenet": FamilyBounds(depth=IntParam(1, 2), width=IntParam(8, 24, step=8)),
}


def default_space() -> SearchSpace:
    """The default space: every family, the full loss mix, broad optimisation ranges."""
    return SearchSpace(families=dict(STUDENT_FAMILY_BOUNDS), metadata={"preset": "default"})


def smoke_space() -> SearchSpace:
    """A tiny space for ``--smoke``: small plain CNNs, so a setup check takes seconds."""
    return SearchSpace(
        families={"cnn": FamilyBounds(depth=IntParam(1, 1), width=IntParam(8, 16, step=8))},
        batch_size=ChoiceParam((64,)),
        metadata={"preset": "smoke"},
    )


PRESETS = {"default": default_space, "smoke": smoke_space}
