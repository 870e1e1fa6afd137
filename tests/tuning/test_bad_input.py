"""Bad input: one line naming the problem and the fix, exit status 2, and no run folder left behind."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import search
from trainers.models import build_teacher

REPO = Path(__file__).resolve().parents[2]
RUN = "bad"


def _space(tmp_path: Path, text: str, suffix: str = ".yaml") -> str:
    path = tmp_path / f"space{suffix}"
    path.write_text(text)
    return str(path)


def _image_folder(tmp_path: Path, classes: dict[str, int], corrupt: bool = False) -> str:
    root = tmp_path / "images"
    root.mkdir()
    for name, count in classes.items():
        (root / name).mkdir()
        for index in range(count):
            Image.new("RGB", (8, 8), color=(index * 20, 0, 0)).save(root / name / f"{index}.png")
    if corrupt:
        (root / next(iter(classes)) / "broken.png").write_bytes(b"not a png")
    return str(root)


def _checkpoint(tmp_path: Path, arch: str, state_arch: str = "resnet-large", classes: int = 10) -> str:
    path = tmp_path / "teacher.pt"
    torch.save({"arch": arch, "state_dict": build_teacher(state_arch, 1, classes).state_dict()}, path)
    return str(path)


# Each case: (the flags, given a temporary folder; a part of the one error line, where {tmp} is that folder).
CASES = {
    "budget zero": (lambda tmp: ["--budget", "0"], "--budget must be at least 1"),
    "budget not an integer": (lambda tmp: ["--budget", "ten"], "invalid int value: 'ten'"),
    "epochs zero": (lambda tmp: ["--epochs", "0"], "--epochs must be at least 1"),
    "unknown dataset": (lambda tmp: ["--dataset", "mnistt"], "'mnist'"),
    "unknown teacher": (lambda tmp: ["--teacher", "resnet-larg"], "'resnet-large'"),
    "unknown sampler": (lambda tmp: ["--sampler", "tp"], "'tpe'"),
    "unknown student family": (lambda tmp: ["--space", _space(tmp, "families: [resnett]")], "'resnet'"),
    "data missing offline": (lambda tmp: ["--dataset", "mnist", "--data-dir", str(tmp)], "--download"),
    "image folder empty": (lambda tmp: ["--dataset", "imagefolder", "--data-dir", _image_folder(tmp, {})],
                           "images"),
    "image folder one class": (lambda tmp: ["--dataset", "imagefolder", "--data-dir",
                                            _image_folder(tmp, {"cat": 4})], "class"),
    "image folder unreadable image": (lambda tmp: ["--dataset", "imagefolder", "--data-dir",
                                                   _image_folder(tmp, {"cat": 6, "dog": 6}, corrupt=True)],
                                      "broken.png"),
    "teacher checkpoint missing": (lambda tmp: ["--teacher-checkpoint", str(tmp / "nope.pt")], "nope.pt"),
    "teacher checkpoint corrupt": (lambda tmp: ["--teacher-checkpoint", _garbage(tmp)], "garbage.pt"),
    "teacher checkpoint of another architecture": (lambda tmp: ["--teacher-checkpoint",
                                                                _checkpoint(tmp, "cnn-large")], "teacher.pt"),
    "teacher checkpoint of another class count": (lambda tmp: ["--teacher-checkpoint",
                                                               _checkpoint(tmp, "resnet-large", classes=5)],
                                                  "10 classes"),
    "teacher checkpoint pickled without trust": (lambda tmp: ["--teacher-checkpoint", _pickled(tmp)],
                                                 "pass --trust-checkpoint if you trust its source"),
    "teacher checkpoint truncated": (lambda tmp: ["--teacher-checkpoint", _truncated(tmp)], "corrupt or truncated"),
    "teacher checkpoint of random bytes": (lambda tmp: ["--teacher-checkpoint", _random_bytes(tmp)],
                                           "random.pt is corrupt"),
    "teacher weights with a wrong key": (lambda tmp: ["--teacher", "torchvision:resnet18", "--teacher-weights",
                                                      _wrong_key_weights(tmp)],
                                         "missing keys fc.weight; unexpected keys classifier.weight"),
    "teacher weights missing": (lambda tmp: ["--teacher", "torchvision:resnet18", "--teacher-weights",
                                             str(tmp / "nope.pt")], "--teacher-weights"),
    "library teacher without weights": (lambda tmp: ["--teacher", "torchvision:resnet18"], "needs --teacher-weights"),
    "unknown torchvision model": (lambda tmp: ["--teacher", "torchvision:resnet19", "--teacher-weights",
                                               _wrong_key_weights(tmp)], "'resnet18'"),
    "factory module missing": (lambda tmp: ["--teacher", "no_such_package.nets:build"], "cannot import"),
    "teacher features of a torchscript file": (lambda tmp: ["--teacher-checkpoint", _scripted(tmp),
                                                            "--teacher-features", "stem"], "cannot tap"),
    "teacher features of an unknown layer": (lambda tmp: ["--teacher", "torchvision:resnet18", "--teacher-weights",
                                                           _resnet18_weights(tmp), "--teacher-features", "layer5"],
                                             "no layer 'layer5' (did you mean 'layer4'?)"),
    "teacher features on a kdsearch teacher": (lambda tmp: ["--teacher-features", "layer2"],
                                               "kdsearch's own teachers"),
    "teacher mean without std": (lambda tmp: ["--teacher-checkpoint", _scripted(tmp), "--teacher-mean", "0.5"],
                                 "together"),
    "teacher std not positive": (lambda tmp: ["--teacher-checkpoint", _scripted(tmp), "--teacher-mean", "0.5",
                                              "--teacher-std", "0"], "--teacher-std must be positive numbers"),
    "trust without a checkpoint": (lambda tmp: ["--trust-checkpoint"], "--trust-checkpoint applies"),
    "unknown teacher preprocessing": (lambda tmp: ["--teacher-checkpoint", _scripted(tmp), "--teacher-preprocessing",
                                                   "librar"], "'library'"),
    "space file malformed": (lambda tmp: ["--space", _space(tmp, "alpha: [0.1, 0.2")], "malformed"),
    "space file malformed json": (lambda tmp: ["--space", _space(tmp, "{", ".json")], "malformed"),
    "space file unknown key": (lambda tmp: ["--space", _space(tmp, "temprature: 2")], "'temperature'"),
    "space file low above high": (lambda tmp: ["--space", _space(tmp, "lr: {low: 0.5, high: 0.1}")],
                                  "greater than high"),
    "space file log with low zero": (lambda tmp: ["--space", _space(tmp, "lr: {low: 0, high: 0.1, log: true}")],
                                     "low > 0"),
    "space file empty choices": (lambda tmp: ["--space", _space(tmp, "batch_size: []")], "empty"),
    "space file missing": (lambda tmp: ["--space", str(tmp / "missing.yaml")], "missing.yaml"),
    "unreachable address": (lambda tmp: ["--address", "127.0.0.1:9"], "cannot reach the Ray cluster"),
    "insecure cluster without an address": (lambda tmp: ["--allow-insecure-cluster"],
                                            "--allow-insecure-cluster applies to a cluster joined with --address"),
    "more GPUs per trial than the cluster has": (lambda tmp: ["--gpus-per-trial", "4"],
                                                 "--gpus-per-trial 4 is more than the 0 GPUs"),
    "results dir not writable": (lambda tmp: ["--results-dir", _file(tmp) + "/results"], "not a folder"),
    "max params no student meets": (lambda tmp: ["--max-params", "100"], "--max-params 100 is too small"),
    "max params percentage no student meets": (lambda tmp: ["--max-params", "0.01%"],
                                               "(0.01% of the teacher's 491,434) is too small"),
    "max params not a count": (lambda tmp: ["--max-params", "5 percent"], "--max-params must be a parameter count"),
    "max params over 100 percent": (lambda tmp: ["--max-params", "150%"], "--max-params must be"),
    "unknown family in --families": (lambda tmp: ["--families", "mobilenet_v3_smal"],
                                     "--families: unknown student family 'mobilenet_v3_smal' (did you mean "
                                     "'mobilenet_v3_small'?)"),
    "empty --families": (lambda tmp: ["--families", ","], "--families must be student family names"),
    "max params none alone": (lambda tmp: ["--max-params", "none"], "--max-params none leaves the students unbounded"),
    "max flops negative": (lambda tmp: ["--max-flops=-5M"], "--max-flops must be a positive number of FLOPs"),
    "max flops not a number": (lambda tmp: ["--max-flops", "lots"], "--max-flops must be a positive number"),
    "max flops no student meets": (lambda tmp: ["--max-flops", "100"],
                                   "--max-flops 100 is too small: no student in the space has at most 100 FLOPs: "
                                   "the smallest, cnn depth 1 width 8, has"),
    "max flops and max params no student meets": (lambda tmp: ["--max-flops", "100", "--max-params", "2%"],
                                                  "--max-params 9,828 (2% of the teacher's 491,434) with "
                                                  "--max-flops 100 are too small"),
    "max latency negative": (lambda tmp: ["--max-latency-ms", "-1"], "--max-latency-ms must be a positive number"),
    "max latency zero": (lambda tmp: ["--max-latency-ms", "0"], "--max-latency-ms must be a positive number"),
    "max latency no student meets": (lambda tmp: ["--max-latency-ms", "0.000001"],
                                     "--max-latency-ms 1e-06 is too small: no student in the space has at most "
                                     "1e-06 ms of latency at batch 1: the smallest"),
    "unknown augment": (lambda tmp: ["--augment", "crop+flp"], "'crop+flip'"),
    "recipe budget negative": (lambda tmp: ["--recipe-budget", "-1"], "--recipe-budget must be at least 0"),
    "gain curve of one size": (lambda tmp: ["--gain-curve", "1"], "--gain-curve needs at least 2"),
    "rounds zero": (lambda tmp: ["--rounds", "0"], "--rounds must be auto or a whole number of rounds, 1 or more"),
    "rounds not a number": (lambda tmp: ["--rounds", "twice"], "--rounds must be auto or a whole number of rounds"),
    "image size zero": (lambda tmp: ["--image-size", "0"], "--image-size must be at least 1"),
    "image size for a fixed-size dataset": (lambda tmp: ["--image-size", "16"], "applies only to imagefolder"),
    "image size for mnist": (lambda tmp: ["--dataset", "mnist", "--data-dir", str(tmp), "--image-size", "32"],
                             "applies only to imagefolder and csv; 'mnist' images have a fixed size"),
    "csv manifest missing": (lambda tmp: ["--dataset", "csv", "--data-dir", str(tmp / "nope.csv")],
                             "nope.csv does not exist"),
    "csv manifest without a label column": (lambda tmp: ["--dataset", "csv", "--data-dir",
                                                         _manifest(tmp, ["path", "class"], [["a.png", "cat"]])],
                                            "has no 'label' column (columns: path, class)"),
    "csv manifest with an unknown split": (lambda tmp: ["--dataset", "csv", "--data-dir",
                                                        _manifest(tmp, ["path", "label", "split"],
                                                                  [["a.png", "cat", "train"],
                                                                   ["b.png", "dog", "holdout"]])],
                                           "line 3: unknown split 'holdout'; use train, val or test"),
    "csv manifest with missing images": (lambda tmp: ["--dataset", "csv", "--data-dir",
                                                      _manifest(tmp, ["path", "label"],
                                                                [["gone.png", "cat"], ["lost.png", "dog"]])],
                                         "gone.png (missing)"),
    "teacher cache negative": (lambda tmp: ["--teacher-cache-gb", "-1"],
                               "--teacher-cache-gb must be a number of gigabytes, 0 or more"),
    "cache dir not writable": (lambda tmp: ["--cache-dir", _file(tmp) + "/cache"],
                               "--cache-dir {tmp}/a-file/cache: {tmp}/a-file is a file, not a folder"),
    "space file mixed log scales": (lambda tmp: ["--space", _space(tmp, "families: {cnn: {width: {low: 4, high: 16, "
                                                                        "log: true}}, resnet: {}}")],
                                    "log scale for every family"),
    "space file augment not boolean": (lambda tmp: ["--space", _space(tmp, "augment: [0, 2]")],
                                       "augment must be true or false"),
    # Values the trainer refuses fail when the space is built, not in every trial after the teacher trained.
    "space file alpha above 1": (lambda tmp: ["--space", _space(tmp, "alpha: {low: 0, high: 2}")],
                                 "alpha must be a number in [0, 1], got high 2"),
    "space file temperature zero": (lambda tmp: ["--space", _space(tmp, "temperature: {low: 0, high: 4, log: false}")],
                                    "temperature must be a number > 0, got low 0"),
    "space file temperature negative": (lambda tmp: ["--space", _space(tmp, "temperature: -2")],
                                        "temperature must be a number > 0, got low -2"),
    "space file lr zero": (lambda tmp: ["--space", _space(tmp, "lr: 0")], "lr must be a number > 0, got low 0"),
    "space file batch size zero": (lambda tmp: ["--space", _space(tmp, "batch_size: 0")],
                                   "batch_size must be an integer >= 1, got 0"),
    "space file distill interval zero": (lambda tmp: ["--space", _space(tmp, "distill_interval: [0, 1]")],
                                         "distill_interval must be an integer >= 1, got 0"),
    "space file weight decay negative": (lambda tmp: ["--space", _space(tmp, "weight_decay: -0.001")],
                                         "weight_decay must be a number >= 0, got low -0.001"),
    "space file beta negative": (lambda tmp: ["--space", _space(tmp, "beta: {low: -1, high: 1, log: false}")],
                                 "beta must be a number >= 0, got low -1"),
    "space file unknown feature loss": (lambda tmp: ["--space", _space(tmp, "feature_loss: [none, gram]")],
                                        "feature_loss must be one of none, attention, hint, got 'gram'"),
    "space file family depth zero": (lambda tmp: ["--space", _space(tmp, "families: {cnn: {depth: 0}}")],
                                     "families.cnn: depth must be an integer >= 1, got low 0"),
}


def _manifest(tmp_path: Path, header: list[str], rows: list[list[str]]) -> str:
    """A CSV manifest with ``header`` and ``rows`` (its images need not exist)."""
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    return str(path)


def _pickled(tmp_path: Path) -> str:
    path = tmp_path / "whole.pt"
    torch.save(build_teacher("resnet-large", 1, 10), path)
    return str(path)


def _truncated(tmp_path: Path) -> str:
    path = tmp_path / "teacher.pt2"
    whole = tmp_path / "whole.pt2"
    model = build_teacher("cnn-large", 1, 10).eval()
    torch.export.save(torch.export.export(model, (torch.randn(2, 1, 8, 8),)), str(whole))
    path.write_bytes(whole.read_bytes()[:2000])
    return str(path)


def _random_bytes(tmp_path: Path) -> str:
    path = tmp_path / "random.pt"
    path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))
    return str(path)


def _wrong_key_weights(tmp_path: Path) -> str:
    state_dict = torchvision.models.resnet18(num_classes=10).state_dict()
    state_dict["classifier.weight"] = state_dict.pop("fc.weight")
    path = tmp_path / "resnet18.pt"
    torch.save(state_dict, path)
    return str(path)


def _resnet18_weights(tmp_path: Path) -> str:
    path = tmp_path / "resnet18-good.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    return str(path)


def _scripted(tmp_path: Path) -> str:
    path = tmp_path / "teacher.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(build_teacher("cnn-large", 1, 10).eval()), str(path))
    return str(path)


def _garbage(tmp_path: Path) -> str:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00garbage" * 10)
    return str(path)


def _file(tmp_path: Path) -> str:
    path = tmp_path / "a-file"
    path.write_text("x")
    return str(path)


def _args(tmp_path: Path, extra: list[str]) -> list[str]:
    results = ["--results-dir", str(tmp_path / "results")] if "--results-dir" not in extra else []
    return ["--smoke", "--run-name", RUN, *results, *extra]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_in_process(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_args, expected = CASES[case]
    expected = expected.replace("{tmp}", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(search.main(_args(tmp_path, make_args(tmp_path))))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert error.startswith("search.py: error: ")
    assert expected in error
    assert not (tmp_path / "results" / RUN).exists()


# Through the command itself, one case from each place input is checked (argparse, the spec, a space file,
# the data, the teacher checkpoint, the size bound, Ray, the file system): what the process adds to the
# in-process table above is its exit status and stderr. Each command loads torch and Ray (seconds apiece).
THROUGH_THE_COMMAND = ("budget not an integer", "unknown sampler", "space file alpha above 1", "space file malformed",
                       "image folder empty", "teacher checkpoint of another architecture",
                       "teacher checkpoint pickled without trust", "teacher weights with a wrong key",
                       "max params no student meets", "more GPUs per trial than the cluster has",
                       "unreachable address", "results dir not writable")


@pytest.mark.parametrize("cases", [THROUGH_THE_COMMAND[start::2] for start in range(2)],
                         ids=lambda c: f"{len(c)} cases")
def test_bad_input_through_the_command(cases: list[str], tmp_path: Path) -> None:
    """A case from every stage of checking through ``search.py`` itself, a few commands at a time."""
    running = {}
    for case in cases:
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        make_args, _ = CASES[case]
        running[case] = (folder, subprocess.Popen(
            [sys.executable, str(REPO / "search.py"), *_args(folder, make_args(folder))],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for case, (folder, process) in running.items():
        _, stderr = process.communicate(timeout=180)
        lines = stderr.strip().splitlines()
        assert process.returncode == 2, f"{case}: {stderr}"
        assert len(lines) == 1 and CASES[case][1].replace("{tmp}", str(folder)) in lines[0], f"{case}: {stderr}"
        assert not (folder / "results" / RUN).exists(), case


# A flag value whose package is missing: (the package hidden, the flags, the one line).
MISSING_PACKAGES = {
    "cmaes sampler": ("cmaes", ["--sampler", "cmaes"],
                      "--sampler cmaes needs the 'cmaes' package, which is not installed; run 'pip install cmaes' or "
                      "choose another --sampler"),
    "latency bound": ("onnxruntime", ["--max-latency-ms", "2"],
                      "--max-latency-ms times students with onnxruntime (the runtime of the exported best/model.onnx), "
                      "which is not installed; run 'pip install onnxruntime' or bound the students with --max-params "
                      "or --max-flops"),
}


@pytest.mark.parametrize("case", sorted(MISSING_PACKAGES))
def test_a_flag_whose_package_is_missing_is_refused_before_any_work(
        case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    package, flags, message = MISSING_PACKAGES[case]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == package else real_find_spec(name, *args))
    assert search.main(_args(tmp_path, flags)) == 2
    assert capsys.readouterr().err.strip() == f"search.py: error: {message}"
    assert not (tmp_path / "results" / RUN).exists()
