"""The teacher as a trial sees it: a frozen model plus its outputs on the training set, computed once.

Without augmentation every trial reads the teacher's logits (and attention maps / hint features)
for a batch from these cached tensors by index, so a KD step costs no teacher forward at all.
With augmentation the views are finite ((2p + 1)^2 crops, times 2 with flips): where the teacher's
outputs on every view of every training image fit the bounds below, they are cached too and looked up
by (view, index); otherwise the teacher runs online on the views the student sees, on KD steps only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trainers.data import DatasetInfo, SplitImages, inference_batch_size, render_view, view_count
from trainers.losses import TeacherFeatures, feature_loss_names, get_feature_loss
from trainers.teacher_views import ViewStore, build_logits, open_logits

OUTPUT_BATCH_SIZE = 512
# Per-view outputs are cached only when computing them costs at most this many image forwards (views x
# training images; digits: 9 x 1,077; a 10,000-image 28x28 folder: 49 x 6,000) and the logits take at most
# this much memory; above, the teacher runs online. Online, every KD epoch of every trial costs one forward
# per training image, and a default search runs hundreds of KD epochs, so the cache pays long before this
# bound. Per-view feature maps (attention, hint) are kept while all of them fit the same budget.
MAX_VIEW_FORWARDS = 500_000
MAX_VIEW_BYTES = 256 * 2**20
# The training images as a tensor or as a split of the uint8 store (read and normalised a batch at a time).
Images = torch.Tensor | SplitImages


@dataclass
class TeacherSignal:
    """What the KD terms of one step need from the teacher for one batch: its logits and, for a feature
    loss, that loss's ``teacher_signal`` (``None`` for ``"none"``)."""

    logits: torch.Tensor
    features: TeacherFeatures | None = None


@dataclass
class TeacherOutputs:
    """The teacher's outputs on the whole (un-augmented) training split, row-aligned with it.

    ``features`` maps each registered feature loss to its cached teacher signal; a loss whose signal
    was too large to cache is missing, and the teacher then runs online for it.
    """

    logits: torch.Tensor
    features: dict[str, TeacherFeatures]
    # The same outputs on every augmented view, each tensor with a leading view dimension: (views, N, ...).
    per_view: TeacherOutputs | None = None
    # The fp16 file the (per-view) logits are mapped from (`trainers.teacher_views`); it travels instead of them.
    logits_path: str | None = None

    def to(self, device: torch.device | str) -> TeacherOutputs:
        per_view = self.per_view.to(device) if self.per_view is not None else None
        features = {name: _map_tensors(signal, lambda t: t.to(device)) for name, signal in self.features.items()}
        return TeacherOutputs(self.logits.to(device), features, per_view, self.logits_path)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        if self.logits_path is not None and self.logits.device.type == "cpu":
            state["logits"] = None  # mapped again from the file where this is unpickled
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        if state["logits"] is None:
            state["logits"] = open_logits(str(state["logits_path"]))
        self.__dict__.update(state)

    def answers(self, feature_loss: str) -> bool:
        """Whether these cached outputs hold what a step with ``feature_loss`` needs."""
        return feature_loss == "none" or feature_loss in self.features

    def rows(self, rows: tuple[torch.Tensor, ...], feature_loss: str) -> TeacherSignal:
        """The cached signal at ``rows`` (``(indices,)``, or ``(views, indices)`` for per-view outputs)."""
        features = self.features.get(feature_loss)
        # .float(): logits kept on disk are fp16; the loss is computed in float32.
        return TeacherSignal(logits=self.logits[rows].float(),
                             features=_map_tensors(features, lambda t: t[rows]) if features is not None else None)


class Teacher:
    """A trained teacher model (kept in eval mode) and, optionally, its cached training-set outputs."""

    def __init__(self, model: nn.Module, name: str, outputs: TeacherOutputs | None = None) -> None:
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.name = name
        self.outputs = outputs

    @classmethod
    def with_cached_outputs(cls, model: nn.Module, name: str, train_images: Images,
                            views_of: DatasetInfo | None = None, background: Sequence[float] | None = None,
                            view_store: ViewStore | None = None, stop_requested: Callable[[], bool] | None = None,
                            log: Callable[[str], None] | None = None) -> Teacher:
        """Wrap ``model`` and compute its outputs on ``train_images`` once; with ``views_of`` (the dataset's
        augmentation) also its logits on every augmented view, where ``fits_view_cache`` allows: in memory,
        or with ``view_store`` as an fp16 memory map on disk that every trial maps (``stop_requested`` and
        ``log`` as ``build_logits``'s: a stop keeps the views done and raises ``ViewLogitsStopped``)."""
        outputs = compute_outputs(model, train_images)
        if views_of is not None and views_of.augmented and fits_view_cache(views_of, train_images, view_store):
            outputs.per_view = compute_view_outputs(model, train_images, views_of, background, view_store, name,
                                                    stop_requested=stop_requested, log=log)
        return cls(model, name, outputs)

    def to(self, device: torch.device | str) -> Teacher:
        outputs = self.outputs.to(device) if self.outputs is not None else None
        return Teacher(self.model.to(device), self.name, outputs)

    def signal(self, images: torch.Tensor, indices: torch.Tensor | None, feature_loss: str,
               views: torch.Tensor | None = None) -> TeacherSignal:
        """The teacher's view of a batch: cached rows when ``indices`` are given, else a forward pass.

        ``indices`` index the training split. For augmented ``images``, ``views`` holds each image's view
        id (``augment_views``): cached per-view logits answer a logits-only request, anything else runs
        the teacher on ``images``. Pass ``indices=None`` to force the forward pass.
        """
        cached = self.outputs
        if views is not None:
            per_view = cached.per_view if cached is not None else None
            if indices is not None and per_view is not None and per_view.answers(feature_loss):
                return per_view.rows((views, indices), feature_loss)
        elif indices is not None and cached is not None and cached.answers(feature_loss):
            return cached.rows((indices,), feature_loss)
        return self._forward(images, feature_loss)

    def probe_signal(self, first_images: torch.Tensor, feature_loss: str) -> TeacherFeatures | None:
        """``feature_loss``'s teacher signal on the first rows of the training split (e.g. to size a
        regressor): read from the cache when it holds them, so no teacher forward runs then."""
        cached = self.outputs
        if cached is not None and cached.answers(feature_loss):
            rows = torch.arange(len(first_images), device=cached.logits.device)
            return cached.rows((rows,), feature_loss).features
        return self._forward(first_images, feature_loss).features

    def _forward(self, images: torch.Tensor, feature_loss: str) -> TeacherSignal:
        with torch.no_grad():
            if feature_loss == "none":
                return TeacherSignal(logits=self.model(images))
            logits, features = self.model.forward_features(images)
            return TeacherSignal(logits=logits, features=get_feature_loss(feature_loss).teacher_signal(features))


def fits_view_cache(info: DatasetInfo, train_images: Images, view_store: ViewStore | None = None) -> bool:
    """Whether per-view logits for ``info``'s augmentation are within the forward bound and, in memory,
    ``MAX_VIEW_BYTES`` (float32) or, on disk, the view store's budget (fp16)."""
    views = view_count(info) * len(train_images)
    if views > MAX_VIEW_FORWARDS:
        return False
    if view_store is not None:
        return view_store.logits_bytes(info, len(train_images)) <= view_store.budget_bytes
    return views * info.num_classes * 4 <= MAX_VIEW_BYTES


def view_transform(info: DatasetInfo, view: int,
                   background: Sequence[float] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The batch transform that renders augmented view ``view`` (as the per-view caches index them)."""
    return lambda batch: render_view(batch, info, view, background)


def compute_view_outputs(model: nn.Module, images: Images, info: DatasetInfo,
                         background: Sequence[float] | None, view_store: ViewStore | None = None,
                         teacher_name: str = "", stop_requested: Callable[[], bool] | None = None,
                         log: Callable[[str], None] | None = None) -> TeacherOutputs:
    """The teacher's outputs on every view of every image, stacked on a leading view dimension.

    Feature maps are dropped (the teacher then runs online for feature losses on augmented views)
    when they would take more than ``MAX_VIEW_BYTES`` in all; the first view's sizes tell, so the
    other views then compute their logits alone.
    """
    views = range(view_count(info))

    def as_view(view: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return view_transform(info, view, background)

    first = compute_outputs(model, images, transform=as_view(views[0]))
    # Every view has the same shape, so a signal the first view kept (within its loss's own cap) fits in all.
    names = list(first.features)
    if len(views) * sum(_bytes(first.features[name]) for name in names) > MAX_VIEW_BYTES:
        names = []
    if view_store is not None and not names:
        # Logits alone, view by view into the file (or read from it, when an earlier run of this teacher on
        # this dataset wrote it): never all views in memory at once.
        path = view_store.path_for(model, teacher_name, info, background)
        shape = (len(views), len(images), first.logits.shape[1])

        def logits_of(view: int) -> torch.Tensor:
            if view == views[0]:
                return first.logits
            return compute_outputs(model, images, with_features=False, transform=as_view(view)).logits

        logits = build_logits(path, shape, logits_of, stop_requested=stop_requested, log=log)
        return TeacherOutputs(logits=logits, features={}, logits_path=str(path))
    rest = [compute_outputs(model, images, with_features=bool(names), transform=as_view(view))
            for view in views[1:]]
    per_view = [first, *rest]
    features = {name: _stack([outputs.features[name] for outputs in per_view]) for name in names}
    if view_store is not None:
        path = view_store.path_for(model, teacher_name, info, background)
        shape = (len(views), len(images), first.logits.shape[1])
        logits = build_logits(path, shape, lambda view: per_view[view].logits)
        return TeacherOutputs(logits=logits, features=features, logits_path=str(path))
    return TeacherOutputs(logits=torch.stack([outputs.logits for outputs in per_view]), features=features)


def compute_outputs(model: nn.Module, images: Images, with_features: bool = True,
                    transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> TeacherOutputs:
    """Run ``model`` once over ``images`` in eval mode and keep its logits and (``with_features``) every
    registered feature loss's teacher signal, each within that loss's ``max_cached_bytes``.

    ``images`` is read a batch at a time (a split of the uint8 store is normalised per batch), and
    ``transform`` (e.g. one augmented view) is applied to each batch before the teacher sees it."""
    model.eval()
    # A foreign teacher without named feature layers gives logits only (its searches use no feature loss).
    with_features = with_features and getattr(model, "provides_features", True)
    losses = [get_feature_loss(name) for name in feature_loss_names()] if with_features else []
    logits: list[torch.Tensor] = []
    signals: dict[str, list[TeacherFeatures]] = {loss.name: [] for loss in losses}
    # no_grad, not inference_mode: inference tensors cannot be saved for the student's backward.
    with torch.no_grad():
        size = inference_batch_size(images.shape[1:], OUTPUT_BATCH_SIZE)
        for start in range(0, len(images), size):
            batch = images[start:start + size]
            if transform is not None:
                batch = transform(batch)
            if not losses:
                logits.append(model(batch))
                continue
            batch_logits, features = model.forward_features(batch)
            logits.append(batch_logits)
            for loss in losses:
                signals[loss.name].append(loss.teacher_signal(features))
    features = {loss.name: _concatenate(signals[loss.name]) for loss in losses
                if loss.max_cached_bytes is None or sum(map(_bytes, signals[loss.name])) <= loss.max_cached_bytes}
    return TeacherOutputs(logits=torch.cat(logits), features=features)


def _map_tensors(signal: TeacherFeatures, function: Callable[[torch.Tensor], torch.Tensor]) -> TeacherFeatures:
    """``function`` applied to a signal's tensor, or to each of its per-stage tensors."""
    return [function(tensor) for tensor in signal] if isinstance(signal, list) else function(signal)


def _bytes(signal: TeacherFeatures) -> int:
    tensors = signal if isinstance(signal, list) else [signal]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def _concatenate(batches: list[TeacherFeatures]) -> TeacherFeatures:
    """Batches of one signal joined along the sample dimension (stage by stage for per-stage signals)."""
    if isinstance(batches[0], list):
        return [torch.cat(stage) for stage in zip(*batches, strict=True)]
    return torch.cat(batches)  # type: ignore[arg-type]


def _stack(views: list[TeacherFeatures]) -> TeacherFeatures:
    """One signal per view stacked on a leading view dimension (stage by stage for per-stage signals)."""
    if isinstance(views[0], list):
        return [torch.stack(stage) for stage in zip(*views, strict=True)]
    return torch.stack(views)  # type: ignore[arg-type]
