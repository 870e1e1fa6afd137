"""Batch transforms: random crops and flips of a (B, C, H, W) batch, and the finite views they make.

They run on whole batches on the batch's device (the GPU when there is one), never per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from trainers.data._info import DatasetInfo


def augment_batch(
    images: torch.Tensor,
    info: DatasetInfo,
    generator: torch.Generator | None = None,
    background: Sequence[float] | None = None,
) -> torch.Tensor:
    """Random crop (padding `info.crop_padding`) and random horizontal flip of a (B, C, H, W) batch.

    The padding takes the per-channel `background` value (`TensorSplits.background`: a raw 0 pixel after
    normalisation, so a shifted digit shows the black border it would on paper); 0 when not given.
    Vectorised over the batch and run on the images' device; the random draws come from `generator`
    (on its own device) so a seeded generator gives the same batch every time. Returns `images` itself
    when the dataset is not augmented, otherwise a new tensor.
    """
    return augment_views(images, info, generator, background)[0]


def augment_views(
    images: torch.Tensor,
    info: DatasetInfo,
    generator: torch.Generator | None = None,
    background: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`augment_batch` (the same random draws), plus the id of the view each image became.

    The views of an image are finite: (2p + 1)^2 crop offsets, times 2 with flips. A view id indexes
    them (`view_count`, `render_view`), so per-view teacher outputs can be computed once and looked up.
    """
    batch = len(images)
    views = torch.zeros(batch, dtype=torch.long, device=images.device)
    if not info.augmented:
        return images, views
    # Draw on the generator's own device: a CPU generator cannot fill a CUDA tensor.
    rng_device = generator.device if generator is not None else images.device
    if info.crop_padding > 0:
        span = 2 * info.crop_padding + 1
        offsets = torch.randint(0, span, (2, batch), generator=generator, device=rng_device).to(images.device)
        images = _crop_at(images, offsets, info.crop_padding, background)
        views = offsets[0] * span + offsets[1]
    if info.horizontal_flip:
        flip = torch.rand(batch, generator=generator, device=rng_device).to(images.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        views = views * 2 + flip.long()
    return images, views


def view_count(info: DatasetInfo) -> int:
    """How many distinct views `augment_views` can make of one image (1 without augmentation)."""
    span = 2 * info.crop_padding + 1
    return span * span * (2 if info.horizontal_flip else 1)


def render_view(
    images: torch.Tensor, info: DatasetInfo, view: int, background: Sequence[float] | None = None
) -> torch.Tensor:
    """Every image of the batch as view `view` (the id `augment_views` reports), pixel for pixel."""
    flipped = False
    if info.horizontal_flip:
        view, flipped = divmod(view, 2)
    if info.crop_padding > 0:
        span = 2 * info.crop_padding + 1
        row, col = divmod(view, span)
        offsets = torch.tensor([[row], [col]], device=images.device).expand(2, len(images))
        images = _crop_at(images, offsets, info.crop_padding, background)
    return images.flip(-1) if flipped else images


def _crop_at(
    images: torch.Tensor, offsets: torch.Tensor, padding: int, background: Sequence[float] | None = None
) -> torch.Tensor:
    """Each image cropped back to its size at (row, column) `offsets[:, i]` of its padded version."""
    batch, channels, height, width = images.shape
    device = images.device
    if background is None:
        padded = F.pad(images, (padding, padding, padding, padding))
    else:
        fill = torch.tensor(background, dtype=images.dtype, device=device).view(1, channels, 1, 1)
        padded = fill.expand(batch, channels, height + 2 * padding, width + 2 * padding).clone()
        padded[:, :, padding:padding + height, padding:padding + width] = images
    rows = offsets[0][:, None] + torch.arange(height, device=device)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(width, device=device)  # (B, W)
    # Broadcast advanced indices (B,1,1,1), (1,C,1,1), (B,1,H,1), (B,1,1,W) gather (B, C, H, W) at once.
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
