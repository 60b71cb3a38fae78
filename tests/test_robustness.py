"""Bad, odd and hostile inputs (issue #14): one table anyone can extend, plus the checks a table row cannot hold.

Each row of ``CASES``: an id, a builder that makes the bad input under ``tmp_path`` and returns the command's
argv, the exit code, words the one error line must hold, and optionally a check run afterwards (nothing
executed, nothing overwritten). Commands run in-process through ``medsuite.cli.main``; volumes are tiny.
The viewer's findings (5, 6) are tested with the viewer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from medsuite.cli import main
from medsuite.io import write_nifti
from medsuite.segmentation.infer import DEFAULT_CHECKPOINT

from medsuite.config import PIPELINES_DIR

SHIPPED_REGISTRATION_PIPELINE = PIPELINES_DIR / "registration_girnet.yaml"


def run(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of one in-process command."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    return int(stop.value.code or 0), capsys.readouterr().err


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Builders of bad inputs


def image(path: Path, *, shape=(16, 16, 6), value: float | None = None, seed: int = 0) -> Path:
    """A small short-axis-like volume (a bright disc on noise); ``value`` poisons one voxel."""
    rng = np.random.default_rng(seed)
    array = rng.normal(50, 5, shape).astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    array[((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) < (shape[0] / 4) ** 2] += 100
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    if value is None:
        return write_nifti(path, array, affine)
    array[1, 1, 1] = value
    return poisoned(path, array, affine)


def poisoned(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


class Payload:
    """A pickle that runs a shell command when unpickled (what a hostile checkpoint holds)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(tmp: Path) -> list:
    torch.save({"format": "medsuite-checkpoint-v2", "kind": "segmentation", "state": Payload(tmp / "pwned_marker")}, tmp / "evil.pt")
    return ["segment", image(tmp / "in" / "a.nii.gz"), "-o", tmp / "out", "--model", tmp / "evil.pt"]


def flipped_checkpoint(tmp: Path) -> list:
    data = bytearray(DEFAULT_CHECKPOINT.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = bytes(b ^ 0x5A for b in data[middle : middle + 2048])
    (tmp / "flipped.pt").write_bytes(bytes(data))
    return ["segment", image(tmp / "in" / "a.nii.gz"), "-o", tmp / "out", "--model", tmp / "flipped.pt"]


def foreign_checkpoint(tmp: Path) -> list:
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp / "foreign.pt")
    return ["segment", image(tmp / "in" / "a.nii.gz"), "-o", tmp / "out", "--model", tmp / "foreign.pt"]


def colliding_names(tmp: Path) -> list:
    return ["segment", image(tmp / "d1" / "image.nii.gz"), image(tmp / "d2" / "image.nii.gz"), image(tmp / "d2" / "image_2.nii.gz"), "-o", tmp / "out"]


def ground_truth_beside(tmp: Path) -> list:
    image(tmp / "d" / "p1.nii.gz")
    (tmp / "d" / "p1_seg.nii.gz").write_bytes(b"the user's ground truth")
    return ["segment", tmp / "d", "-o", tmp / "d"]


def register_over_user_file(tmp: Path) -> list:
    fixed, moving = _pair(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "warped.nii.gz").write_bytes(b"mine")
    return ["register", fixed, moving, "-o", tmp / "out", "--model", "none", "--steps", "2", "--pipeline", SHIPPED_REGISTRATION_PIPELINE]


def cohort(tmp: Path, n: int = 3) -> Path:
    from medsuite.concepts import generate_cohort, load_vocabulary, write_cohort

    return write_cohort(generate_cohort(load_vocabulary(), n, size=32, seed=3), tmp / "cohort")


def classify_into_cohort(tmp: Path) -> list:
    return ["classify", cohort(tmp), "-o", cohort(tmp), "--quiet"]


def nan_picture(tmp: Path, value: float = np.nan) -> list:
    case = next(p for p in sorted(cohort(tmp).iterdir()) if p.is_dir())
    picture = np.random.default_rng(0).random((32, 32, 1)).astype(np.float32)
    picture[3, 3, 0] = value
    for old in (case / "US").iterdir():
        old.unlink()
    poisoned(case / "US" / "phase0.nii.gz", picture, np.eye(4))
    return ["classify", case, "-o", tmp / "out", "--quiet"]


def blank_picture(tmp: Path) -> list:
    case = next(p for p in sorted(cohort(tmp).iterdir()) if p.is_dir())
    for old in (case / "US").iterdir():
        old.unlink()
    write_nifti(case / "US" / "phase0.nii.gz", np.zeros((32, 32, 1), np.float32), np.eye(4))
    return ["classify", case, "-o", tmp / "out", "--quiet"]


def latin1_report(tmp: Path) -> list:
    case = next(p for p in sorted(cohort(tmp).iterdir()) if p.is_dir())
    (case / "report.txt").write_bytes("Läsion".encode("latin-1"))
    return ["classify", case, "-o", tmp / "out", "--quiet"]


def correction(value: str) -> Callable[[Path], list]:
    return lambda tmp: ["classify", cohort(tmp, 3), "-o", tmp / "out", "--quiet", "--set", f"US:acoustic hollowing={value}"]


def continue_with_other_model(tmp: Path) -> list:
    case = image(tmp / "in" / "a.nii.gz")
    assert main_code(["segment", case, "-o", tmp / "out", "--quiet"]) == 0
    shutil.copy(DEFAULT_CHECKPOINT, tmp / "other.pt")
    return ["segment", case, "-o", tmp / "out", "--quiet", "--continue", "--model", tmp / "other.pt"]


def init_over_last(tmp: Path) -> list:
    (tmp / "run").mkdir()
    (tmp / "run" / "last.pt").write_bytes(b"an earlier run")
    return ["train", "segmentation", "--pipeline", PIPELINES_DIR / "segmentation_neunet_acdc.yaml", "-o", tmp / "run", "--init", DEFAULT_CHECKPOINT]


def output_is_a_file(tmp: Path) -> list:
    (tmp / "taken").write_text("a file")
    return ["segment", image(tmp / "in" / "a.nii.gz"), "-o", tmp / "taken"]


def registration_yaml(tmp: Path, old: str, new: str) -> list:
    text = SHIPPED_REGISTRATION_PIPELINE.read_text()
    assert old in text
    (tmp / "pipeline.yaml").write_text(text.replace(old, new, 1))
    return ["register", image(tmp / "f.nii.gz"), image(tmp / "m.nii.gz", seed=1), "-o", tmp / "out", "--pipeline", tmp / "pipeline.yaml"]


def latin1_yaml(tmp: Path) -> list:
    (tmp / "pipeline.yaml").write_bytes("name: Läsion\n".encode("latin-1"))
    return ["register", image(tmp / "f.nii.gz"), image(tmp / "m.nii.gz"), "-o", tmp / "out", "--pipeline", tmp / "pipeline.yaml"]


def main_code(argv: list) -> int:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    return int(stop.value.code or 0)


def nothing_in(folder: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert not list((tmp / folder).glob("*.nii.gz")) if (tmp / folder).exists() else True

    return check


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Bad:
    id: str
    build: Callable[[Path], list]  # makes the bad input under tmp_path, returns argv
    code: int
    words: tuple[str, ...]  # all in the one error line (case-insensitive)
    check: Callable[[Path], None] | None = None


CASES = [
    # 1. a checkpoint must never run code, and a damaged one is refused
    Bad("checkpoint-pickle", evil_checkpoint, 2, ("refused", "run code"), lambda tmp: not (tmp / "pwned_marker").exists() or pytest.fail("the pickle ran")),
    Bad("checkpoint-flipped-bytes", flipped_checkpoint, 2, ("flipped.pt", "damaged"), nothing_in("out")),
    Bad("checkpoint-foreign", foreign_checkpoint, 2, ("not a medsuite checkpoint",)),
    # 2. two inputs, one output name
    Bad("collision", colliding_names, 2, ("image.nii.gz", "both map"), nothing_in("out")),
    # 3. a user's file is never replaced; no outputs inside input case folders
    Bad("overwrite-ground-truth", ground_truth_beside, 2, ("p1_seg.nii.gz", "would be replaced"), lambda tmp: (tmp / "d" / "p1_seg.nii.gz").read_bytes() == b"the user's ground truth" or pytest.fail("overwritten")),
    Bad("classify-into-cohort", classify_into_cohort, 2, ("inside the input case folder",)),
    Bad("register-over-user-file", register_over_user_file, 2, ("warped.nii.gz", "would be replaced"), lambda tmp: (tmp / "out" / "warped.nii.gz").read_bytes() == b"mine" or pytest.fail("overwritten")),
    # 4. NaN/Inf in, NaN out, and corrections out of range
    Bad("classify-nan-pixel", nan_picture, 1, ("phase0.nii.gz", "nan")),
    Bad("classify-inf-pixel", lambda tmp: nan_picture(tmp, np.inf), 1, ("phase0.nii.gz", "infinite")),
    Bad("classify-blank-image", blank_picture, 1, ("phase0.nii.gz", "blank")),
    Bad("set-nan", correction("nan"), 2, ("outside 0..1",)),
    Bad("set-huge", correction("1e308"), 2, ("outside 0..1",)),
    Bad("set-word", correction("maybe"), 2, ("not a concept value",)),
    Bad("segment-nan-voxel", lambda tmp: ["segment", image(tmp / "in" / "a.nii.gz", value=np.nan), "-o", tmp / "out", "--quiet"], 1, ("a.nii.gz", "nan")),
    # 7. resume: provenance and the model credited
    Bad("continue-other-model", continue_with_other_model, 2, ("--continue", "other options", "model")),
    Bad("init-over-last", init_over_last, 2, ("last.pt", "--resume")),
    # 8. the user can fix it: one line, exit 2
    Bad("output-is-a-file", output_is_a_file, 2, ("taken", "is a file")),
    Bad("missing-output", lambda tmp: ["segment", image(tmp / "a.nii.gz")], 2, ("missing option", "--output")),
    Bad("negative-sigma", lambda tmp: ["pretext", "targets", tmp, "-o", tmp / "out", "--sigma-mm", "-1"], 2, ("--sigma-mm",)),
    Bad("empty-card-folder", lambda tmp: ["cards", "validate", tmp], 2, ("no card files",)),
    Bad("yaml-not-utf8", latin1_yaml, 2, ("pipeline.yaml", "utf-8")),
    Bad("report-not-utf8", latin1_report, 1, ("report.txt", "utf-8")),
    # 9. unknown keys name the nearest valid one
    Bad("unknown-top-key", lambda tmp: registration_yaml(tmp, "prealign_iterations:", "prealign_iteratoins:"), 2, ("pipeline.yaml", "prealign_iteratoins", "did you mean 'prealign_iterations'")),
    Bad("unknown-nested-key", lambda tmp: registration_yaml(tmp, "  window:", "  windwo:"), 2, ("instance.windwo", "did you mean 'window'")),
    Bad("unknown-backbone-key", lambda tmp: registration_yaml(tmp, "  norm: instance", "  norm: instance\n  nrom: batch"), 2, ("nrom", "did you mean 'norm'")),
]


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line(bad: Bad, tmp_path, capsys):
    code, err = run(bad.build(tmp_path), capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == bad.code, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert "internal error" not in lines[0]
    for word in bad.words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    if bad.check is not None:
        bad.check(tmp_path)


# ---------------------------------------------------------------------------------------------
# What a row cannot hold


def test_help_and_bare_command(capsys):
    for argv in ([], ["-h"], ["segment", "-h"], ["train"]):
        code, _ = run(argv, capsys)
        assert code == 0, argv


def test_resume_keeps_complete_entries_and_removes_orphaned_temp_files(tmp_path, capsys):
    import json

    inputs = [image(tmp_path / "in" / f"{name}.nii.gz", seed=i) for i, name in enumerate(("a", "b"))]
    out = tmp_path / "out"
    assert run(["segment", *inputs, "-o", out, "--quiet"], capsys)[0] == 0
    first = json.loads((out / "report.json").read_text())["cases"]
    # a run killed mid-case: b's mask half renamed (a temp file left), b's report entry gone
    (out / "b_seg.nii.gz").unlink()
    orphan = out / ".b_seg-abcd1234.nii.gz"
    orphan.write_bytes(b"half")
    report = json.loads((out / "report.json").read_text())
    del report["cases"]["b"]
    (out / "report.json").write_text(json.dumps(report))
    assert run(["segment", *inputs, "-o", out, "--quiet", "--continue"], capsys)[0] == 0
    cases = json.loads((out / "report.json").read_text())["cases"]
    assert not orphan.exists()
    assert cases["a"]["status"] == "skipped (done)" and cases["a"]["label_volumes_ml"] == first["a"]["label_volumes_ml"] and cases["a"]["sha256"]
    assert cases["b"]["status"] == "done" and cases["b"]["label_volumes_ml"] == first["b"]["label_volumes_ml"]
    # a mask corrected by hand is the user's now: a rerun refuses to replace it
    (out / "a_seg.nii.gz").write_bytes(b"edited in Slicer")
    code, err = run(["segment", *inputs, "-o", out, "--quiet"], capsys)
    assert code == 2 and "would be replaced" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_refused_before_compute(tmp_path, capsys):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    code, err = run(["segment", image(tmp_path / "a.nii.gz"), "-o", tmp_path / "ro" / "out"], capsys)
    assert code == 2 and "not writable" in err


def test_checkpoint_round_trip_digest_and_upgrade(tmp_path):
    from medsuite.checkpoints import load_checkpoint, load_model, main as checkpoints_main, save_checkpoint
    from medsuite.errors import MedsuiteError

    loaded = load_model(DEFAULT_CHECKPOINT, "segmentation")
    assert loaded.payload["sha256"] and loaded.payload["card"] == "acdc_h5" and not loaded.model.training
    path = save_checkpoint(tmp_path / "tiny.pt", kind="encoder", state={"w": torch.arange(4.0)}, config={"backbone": {"kind": "cnn"}})
    assert torch.equal(load_checkpoint(path, kind="encoder")["state"]["w"], torch.arange(4.0))
    # an older checkpoint holding numpy arrays converts in place, weights unchanged
    old = {"format": "medsuite-checkpoint-v1", "kind": "encoder", "medsuite": "0.1.0", "state": {"w": np.arange(3, dtype=np.float32)}, "config": {}}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(MedsuiteError, match="medsuite.checkpoints upgrade"):
        load_checkpoint(tmp_path / "old.pt", kind="encoder")
    assert checkpoints_main(["upgrade", str(tmp_path / "old.pt")]) == 0
    assert load_checkpoint(tmp_path / "old.pt", kind="encoder")["state"]["w"].tolist() == [0.0, 1.0, 2.0]


def test_training_data_checks(tmp_path):
    import gzip

    from monai.data import MetaTensor

    from medsuite.data.checks import CheckLoadedd, require_complete_gzip
    from medsuite.errors import MedsuiteError

    whole = gzip.compress(np.random.default_rng(0).bytes(100_000))
    (tmp_path / "t.nii.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MedsuiteError, match="truncated gzip"):
        require_complete_gzip(tmp_path / "t.nii.gz")
    check = CheckLoadedd("image", "label")
    volume = MetaTensor(torch.zeros(1, 8, 8, 4), meta={"filename_or_obj": "p1.nii.gz"})
    with pytest.raises(MedsuiteError, match="differs from its image"):
        check({"image": volume, "label": MetaTensor(torch.zeros(1, 8, 8, 5))})
    with pytest.raises(MedsuiteError, match="p1.nii.gz: is 4D"):
        check({"image": MetaTensor(torch.zeros(3, 8, 8, 4), meta={"filename_or_obj": "p1.nii.gz"})})
    with pytest.raises(MedsuiteError, match="NaN"):
        check({"image": MetaTensor(torch.full((1, 8, 8, 4), float("nan")))})


def test_non_finite_loss_stops_pretraining_without_saving(tmp_path, capsys):
    from medsuite.pretext.synthetic import write_synthetic_exam

    exam = write_synthetic_exam(tmp_path / "exam", n_sax=3, size=32)
    sax = exam / "sax_ed.nii.gz"
    import nibabel as nib

    img = nib.load(str(sax))
    array = np.asarray(img.dataobj, np.float32)
    array[0, 0, 0] = np.nan
    poisoned(sax, array, img.affine)
    (tmp_path / "pretext.yaml").write_text(f"sources:\n  - {{card: mnms_multiview, root: {exam.parent}}}\nimage_size: 32\niterations: 3\nbatch_size: 2\ndevice: cpu\n")
    code, err = run(["pretrain", "--pipeline", tmp_path / "pretext.yaml", "-o", tmp_path / "run", "--quiet"], capsys)
    assert code == 1 and "training loss became nan at step 1" in err and "sample" in err, err
    assert not (tmp_path / "run" / "encoder.pt").exists()


# ---------------------------------------------------------------------------------------------
# Same input, same options: same bytes, twice, with 1 and 2 threads


def _outputs(folder: Path) -> dict[str, str]:
    skip = {"report.json", "batch.log", "manifest.json"}  # timings and dates
    return {p.relative_to(folder).as_posix(): sha(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip and not p.name.endswith(".png")}


def _pair(tmp: Path) -> tuple[Path, Path]:
    grid = np.mgrid[:20, :20, :20].astype(np.float32)
    blob = lambda c: 100 * np.exp(-(((grid - np.array(c)[:, None, None, None]) ** 2).sum(0)) / 30)  # noqa: E731
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return write_nifti(tmp / "fixed.nii.gz", blob((10, 10, 10)) + 5, affine), write_nifti(tmp / "moving.nii.gz", blob((11, 9, 10)) + 5, affine)


MODEL_COMMANDS: dict[str, Callable[[Path, Path], list]] = {
    "segment": lambda tmp, out: ["segment", image(tmp / "a.nii.gz"), "-o", out, "--quiet"],
    "register": lambda tmp, out: ["register", *_pair(tmp), "-o", out, "--model", "none", "--steps", "4", "--quiet", "--pipeline", SHIPPED_REGISTRATION_PIPELINE],
    "register-checkpoint": lambda tmp, out: ["register", *_pair(tmp), "-o", out, "--steps", "2", "--quiet", "--pipeline", SHIPPED_REGISTRATION_PIPELINE],
    "classify": lambda tmp, out: ["classify", tmp / "cohort" if (tmp / "cohort").exists() else cohort(tmp, 3), "-o", out, "--quiet"],
}


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_same_input_same_bytes_with_one_and_two_threads(command, tmp_path, capsys):
    results = []
    for i, threads in enumerate((1, 1, 2)):
        torch.set_num_threads(threads)
        argv = MODEL_COMMANDS[command](tmp_path, tmp_path / f"out{i}")
        if command.startswith("register"):
            argv += ["--threads", str(threads)]
        code, err = run(argv, capsys)
        assert code == 0, err
        results.append(_outputs(tmp_path / f"out{i}"))
    torch.set_num_threads(1)
    assert results[0] and results[0] == results[1] == results[2]
