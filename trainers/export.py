"""Export a trained student to a folder and load it back from that folder alone.

A folder holds ``model.pt`` (the state_dict: tensors only), ``model.pt2`` (a ``torch.export`` program, for
serving with torch alone), ``model.onnx`` (ONNX, for serving with onnxruntime or any ONNX runtime, no torch)
and ``config.json``: the architecture, the input (shape, channels, the pixel scale and the per-channel
mean/std the model expects its inputs normalised with), the class names in label order, the program's and
the ONNX file's exporters with their parity against PyTorch, and whatever metadata the caller adds. No
pickled model objects.

``model.pt``, ``model.pt2`` and ``model.onnx`` all take *normalised* images, as the trainers feed students:
``(pixels - mean) / std`` per channel, with ``pixels`` in [0, 1] (a stored pixel value / ``pixel_max``).
``load_exported`` returns the model with that normalisation in front (it takes [0, 1] pixels), or the raw
student with ``preprocessing=False``.
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.data import inference_batch_size
from trainers.files import CorruptFileError, atomic_torch_save, atomic_write, atomic_write_json, safe_torch_load
from trainers.models import build_from_arch

STATE_FILE, CONFIG_FILE, PROGRAM_FILE, ONNX_FILE = "model.pt", "config.json", "model.pt2", "model.onnx"
PROGRAM_EXPORTER = "torch.export.export"
# The example batch the program is exported at: torch.export specialises a dimension whose example size is 0
# or 1 to that constant, so a batch of 1 could never give a dynamic batch dimension.
PROGRAM_EXAMPLE_BATCH = 2
# 17 is read by every maintained ONNX runtime (onnxruntime since 1.13, TensorRT 8.6, OpenVINO); fixed here so
# that an export does not change with the torch version.
ONNX_OPSET = 17
# torch's TorchScript-based exporter: about 0.05 s for a small student against 1.5 to 4.5 s for the
# torch.export-based one (dynamo=True, torch 2.14), with the same outputs; export runs after every search.
ONNX_EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
# The starts of the DeprecationWarnings the TorchScript-based ONNX exporter gives (see onnx_export).
ONNX_LEGACY_EXPORTER_WARNING = "You are using the legacy TorchScript-based ONNX export"
ONNX_EXPORTER_CONTEXT_WARNING = "The feature will be removed. Please remove usage of this function"
# The largest |logit difference| between the ONNX model (onnxruntime) and the PyTorch one an export accepts.
PARITY_TOLERANCE = 1e-4
# Images the parity check runs when the caller gives none (random normal, i.e. normalised-like, inputs).
RANDOM_CHECK_IMAGES = 8
PIXELS = "float32 (N, C, H, W), pixels in [0, 1] (a stored pixel value divided by pixel_max)"


class ExportParityError(RuntimeError):
    """The ONNX model's or the torch.export program's outputs differ from the PyTorch model's by more than
    ``PARITY_TOLERANCE``."""


class PreprocessedModel(nn.Module):
    """An exported student behind its preprocessing: takes [0, 1] pixel images (N, C, H, W), normalises them
    per channel with the training split's ``mean`` and ``std``, and returns the student's logits."""

    def __init__(self, student: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.student = student
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def arch(self) -> dict[str, Any]:
        return self.student.arch

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.student(pixels.sub(self.mean).div(self.std))


def export_model(model: nn.Module, folder: str | Path, input_shape: tuple[int, int, int],
                 metadata: dict[str, Any] | None = None, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, pixel_max: float = 255.0,
                 class_names: Sequence[str] | None = None, check_images: Any = None) -> Path:
    """Write the four files of an exported model into ``folder`` (each atomically; ``config.json`` last).

    ``model`` itself is left as it was (device, training mode): a CPU copy in eval mode is exported.
    ``mean``/``std`` are the per-channel statistics the model's inputs were normalised with (none: 0 and 1,
    inputs taken as they are), ``pixel_max`` what a stored pixel is divided by to be in [0, 1], and
    ``class_names`` the classes in label order (none: the label indices as text).

    Before anything is written, ``model.onnx`` (in onnxruntime) and ``model.pt2`` (loaded back from its bytes)
    are run on ``check_images`` (normalised images (N, C, H, W), a tensor or anything sliced like one such as
    a ``SplitImages``; none: ``RANDOM_CHECK_IMAGES`` random normal images) and compared with the PyTorch
    model: a largest absolute logit difference above ``PARITY_TOLERANCE`` in either raises
    ``ExportParityError`` and leaves the folder as it was. The checks (``max_abs_logit_diff``,
    ``top1_agreement``, ``images``) are in ``config.json``'s ``program`` and ``onnx``.
    """
    folder = Path(folder)
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    channels = input_shape[0]
    if check_images is None:
        check_images = torch.randn(RANDOM_CHECK_IMAGES, *input_shape, generator=torch.Generator().manual_seed(0))
    program_bytes, static_batch_reason = export_program(cpu_model, input_shape)
    program_check = program_parity(program_bytes, cpu_model, check_images, dynamic_batch=static_batch_reason is None)
    _raise_unless_parity(program_check, f"the torch.export program ({PROGRAM_FILE}) of {folder}")
    onnx_bytes = onnx_export(cpu_model, input_shape)
    onnx_check = onnx_parity(onnx_bytes, cpu_model, check_images)
    _raise_unless_parity(onnx_check, f"the ONNX export ({ONNX_FILE}) of {folder}")

    atomic_torch_save(cpu_model.state_dict(), folder / STATE_FILE)
    atomic_write(folder / PROGRAM_FILE, lambda stream: stream.write(program_bytes))
    atomic_write(folder / ONNX_FILE, lambda stream: stream.write(onnx_bytes))
    arch = cpu_model.arch
    num_classes = arch.get("num_classes")
    atomic_write_json(folder / CONFIG_FILE, {
        "arch": arch, "input_shape": list(input_shape), "metadata": metadata or {},
        "family": arch.get("family"), "channels": channels,
        "preprocessing": {"input": PIXELS, "pixel_max": pixel_max,
                          "mean": list(mean) if mean is not None else [0.0] * channels,
                          "std": list(std) if std is not None else [1.0] * channels,
                          "normalise": "(pixels - mean) / std per channel, before the model"},
        "class_names": list(class_names) if class_names else [str(label) for label in range(num_classes or 0)],
        "program": {"file": PROGRAM_FILE, "exporter": PROGRAM_EXPORTER, "torch": torch.__version__,
                    "dynamic_batch": static_batch_reason is None,
                    **({} if static_batch_reason is None else {"batch": 1, "why_static": static_batch_reason}),
                    "takes": "normalised images", **program_check, "tolerance": PARITY_TOLERANCE},
        "onnx": {"file": ONNX_FILE, "opset": ONNX_OPSET, "exporter": ONNX_EXPORTER, "input": ONNX_INPUT,
                 "output": ONNX_OUTPUT, "dynamic_batch": True, "takes": "normalised images", **onnx_check,
                 "tolerance": PARITY_TOLERANCE},
    })
    return folder


def _raise_unless_parity(check: dict[str, Any], what: str) -> None:
    """Raise ``ExportParityError`` naming ``what`` when ``check`` (a ``logit_parity`` result) exceeds
    ``PARITY_TOLERANCE``."""
    if not check["max_abs_logit_diff"] <= PARITY_TOLERANCE:  # NaN fails too
        raise ExportParityError(
            f"{what} does not match the PyTorch model: max abs logit difference "
            f"{check['max_abs_logit_diff']:.3g} over {check['images']} images (tolerance {PARITY_TOLERANCE:g}), "
            f"top-1 agreement {check['top1_agreement']:.4f}; nothing was written")


def export_program(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[bytes, str | None]:
    """``model`` (CPU, eval mode) as ``torch.export.save`` bytes, and why its batch size is static (``None``:
    the program takes any batch size).

    The batch dimension is exported dynamic; every registered student family exports so
    (``tests/trainers/test_export.py``). A model whose code fixes its batch size (a branch on it, a reshape
    to a constant) fails that, and is exported at a static batch of 1 instead, the reason kept for
    ``config.json``; a model that does not export at all raises torch's error.
    """
    batch = torch.export.Dim("batch", min=1)
    example = torch.zeros(PROGRAM_EXAMPLE_BATCH, *input_shape)
    static_batch_reason = None
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as error:  # noqa: BLE001 - a fixed batch raises torch's private UserError; any other
        # failure is raised again by the static export below
        static_batch_reason = _first_detail(error)
        program = torch.export.export(model, (example[:1],))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue(), static_batch_reason


def _first_detail(error: Exception) -> str:
    """The line of an export error that says what went wrong: torch's first ``- ...`` line under its
    "Constraints violated" header, else the first line, else the error's type."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line[2:] for line in lines if line.startswith("- ")), lines[0] if lines else type(error).__name__)


def onnx_export(model: nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """``model`` (CPU, eval mode) as ONNX bytes at ``ONNX_OPSET``, any batch size."""
    buffer = io.BytesIO()
    # torch >= 2.9 defaults to the torch.export-based exporter (needs onnxscript, seconds per model).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is kept on purpose (the dynamo one is 20-50x slower here; see
        # ONNX_EXPORTER), so its two DeprecationWarnings (torch 2.14: the exporter itself, and the internal
        # exporter_context it calls) would only tell users about a choice made for them. It emits no
        # FutureWarning; every other warning still reaches the caller.
        for message in (ONNX_LEGACY_EXPORTER_WARNING, ONNX_EXPORTER_CONTEXT_WARNING):
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(2, *input_shape),), buffer, input_names=[ONNX_INPUT],
                          output_names=[ONNX_OUTPUT], opset_version=ONNX_OPSET,
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}}, **legacy)
    return buffer.getvalue()


def onnx_session(model: bytes | str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of an ONNX model (bytes or a file), on ``threads`` threads (default: as many
    as torch has)."""
    import onnxruntime  # here: only exporting, checking and timing need it

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or max(1, torch.get_num_threads())
    if threads == 1:  # a serving latency on one thread: no thread pool between operators either
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_parity(onnx_model: bytes | str | Path, model: nn.Module, images: Any) -> dict[str, Any]:
    """``logit_parity`` of the ONNX model, run with onnxruntime, against ``model``."""
    session = onnx_session(onnx_model)
    return logit_parity(
        lambda inputs: torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: inputs.numpy()})[0]), model, images)


def program_parity(program: bytes, model: nn.Module, images: Any, dynamic_batch: bool = True) -> dict[str, Any]:
    """``logit_parity`` of a ``torch.export.save`` program, loaded from its bytes as a user loads the file,
    against ``model``; a program without ``dynamic_batch`` runs one image at a time."""
    module = torch.export.load(io.BytesIO(program)).module()
    if dynamic_batch:
        return logit_parity(module, model, images)
    return logit_parity(lambda inputs: torch.cat([module(image[None]) for image in inputs]), model, images)


def logit_parity(exported: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, images: Any) -> dict[str, Any]:
    """Run an exported form of ``model`` (a function of a CPU float32 batch) and ``model`` itself (CPU, eval)
    on ``images`` (normalised, (N, C, H, W), read in batches): the largest absolute logit difference, the
    share of images whose top-1 class agrees, and the number of images."""
    count = len(images)
    batch = inference_batch_size(tuple(images.shape[1:]), 256)
    worst, agree = 0.0, 0
    for start in range(0, count, batch):
        inputs = images[start:start + batch].to("cpu", torch.float32).contiguous()
        with torch.no_grad():
            expected = model(inputs)
            got = exported(inputs)
        if got.shape != expected.shape:  # e.g. a batch size baked into the graph
            worst = math.inf
            continue
        worst = max(worst, torch.nan_to_num((got - expected).abs(), nan=math.inf).max().item())
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
    return {"max_abs_logit_diff": worst, "top1_agreement": agree / count if count else 1.0, "images": count}


def load_exported(folder: str | Path, preprocessing: bool = True) -> nn.Module:
    """Rebuild the exported model from ``config.json`` and ``model.pt`` (eval mode, CPU).

    With ``preprocessing`` (the default) it is a ``PreprocessedModel``: it takes [0, 1] pixel images
    (N, C, H, W) and normalises them with the saved mean and std, so it needs nothing from kdsearch's data
    pipeline (``.student`` is the student). ``preprocessing=False`` gives the raw student, which takes
    normalised images as ``model.pt2`` and ``model.onnx`` do (what the trainers feed, e.g. ``TensorSplits.test_x``).
    """
    folder = Path(folder)
    config = read_export_config(folder)
    model = build_from_arch(config["arch"])
    model.load_state_dict(safe_torch_load(folder / STATE_FILE))
    model.eval()
    if not preprocessing:
        return model
    channels = config["input_shape"][0]
    # A folder from before config.json had "preprocessing" kept its statistics in the metadata.
    saved = config.get("preprocessing") or config.get("metadata", {}).get("normalization") or {}
    return PreprocessedModel(model, saved.get("mean", [0.0] * channels), saved.get("std", [1.0] * channels)).eval()


def load_program(folder: str | Path) -> nn.Module:
    """The exported model's ``torch.export`` program (``model.pt2``) as a module: what a server with torch
    alone, not this package, loads with ``torch.export.load(path).module()``.

    It takes normalised images (N, C, H, W) of any batch size (or a batch of 1 where ``config.json``'s
    ``program`` says ``dynamic_batch: false``) and returns the logits. Its graph is the student in eval mode
    (BatchNorm reads its running statistics); torch refuses ``.train()`` and ``.eval()`` on such a module.
    """
    path = Path(folder) / PROGRAM_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {folder} is not an export folder or was exported by an "
                                f"older kdsearch; load_exported({str(folder)!r}) rebuilds the model from "
                                f"{STATE_FILE} and {CONFIG_FILE}")
    return torch.export.load(path).module()


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of an export folder."""
    path = Path(folder) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CorruptFileError(f"{path} is not valid JSON ({error.msg})") from None
