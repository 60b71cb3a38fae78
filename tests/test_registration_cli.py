"""`medsuite register` refuses bad inputs with one line and exit 2, never overwriting inputs."""

from __future__ import annotations

import numpy as np
import pytest

from medsuite.cli import main
from medsuite.io import write_nifti

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _run(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["register", *args])
    return exit_info.value.code, capsys.readouterr().err.strip()


@pytest.fixture
def good(tmp_path):
    return write_nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), AFFINE)


@pytest.mark.parametrize(
    "name, array",
    [
        ("flat2d.nii.gz", np.ones((8, 8), np.float32)),
        ("series4d.nii.gz", np.random.default_rng(1).random((8, 8, 8, 3)).astype(np.float32)),
        ("nan.nii.gz", np.where(np.eye(8)[:, :, None] > 0, np.nan, 1.0).repeat(8, axis=2).astype(np.float32)),
        ("empty.nii.gz", np.zeros((8, 8, 8), np.float32)),
    ],
)
def test_bad_moving_image_is_one_line_exit_2(tmp_path, capsys, good, name, array):
    bad = write_nifti(tmp_path / name, array, AFFINE)
    code, err = _run(capsys, str(good), str(bad))
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:") and name in err


def test_missing_file_is_one_line_exit_2(capsys, good):
    code, err = _run(capsys, "/no/such.nii.gz", str(good))
    assert code == 2 and len(err.splitlines()) == 1 and "no such file" in err


def test_output_over_an_input_is_refused_before_any_work(tmp_path, capsys, good):
    moving = write_nifti(tmp_path / "warped.nii.gz", np.random.default_rng(2).random((8, 8, 8)).astype(np.float32), AFFINE)
    before = moving.read_bytes()
    code, err = _run(capsys, str(good), str(moving), "-o", str(tmp_path))
    assert code == 2 and "would overwrite an input" in err
    assert moving.read_bytes() == before


def test_empty_or_misshapen_lesion_mask_is_one_line_exit_2(tmp_path, capsys, good):
    empty = write_nifti(tmp_path / "empty_mask.nii.gz", np.zeros((8, 8, 8), np.uint8), AFFINE)
    code, err = _run(capsys, str(good), str(good), "--lesion-mask", str(empty), "-o", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1 and "empty_mask.nii.gz" in err and "empty" in err
    small = write_nifti(tmp_path / "small_mask.nii.gz", np.ones((4, 4, 4), np.uint8), AFFINE)
    code, err = _run(capsys, str(good), str(good), "--lesion-mask", str(small), "-o", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1 and "small_mask.nii.gz" in err


def test_cuda_without_a_cuda_device_is_one_line_exit_2(capsys, monkeypatch, good):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = _run(capsys, str(good), str(good), "--device", "cuda")
    assert code == 2 and len(err.splitlines()) == 1 and "no CUDA device" in err


def test_the_chosen_device_reaches_the_networks_and_the_optimisation(tmp_path, capsys, monkeypatch):
    """--device goes through medsuite.runtime's policy to the tensors and the trained networks (a stand-in
    device, since this test must also run where CUDA is absent)."""
    import torch

    from medsuite import runtime
    from medsuite.data.samples import make_pathological_pair, write_pair
    from medsuite.errors import MedsuiteError
    from medsuite.registration import inference

    asked: list[str] = []
    monkeypatch.setattr(runtime, "resolve_device", lambda name: asked.append(name) or torch.device("meta"))
    seen: dict[str, torch.device] = {}

    def spy(fixed, moving, config, *, model=None, **options):
        seen.update(image=fixed.device, model=next(model.parameters()).device)
        raise MedsuiteError("spy", "stopped after recording the devices", "none")

    monkeypatch.setattr(inference, "optimise_in_content_box", spy)
    files = write_pair(make_pathological_pair(3, resolution_mm=8.0), tmp_path / "pair")
    code, _ = _run(capsys, str(files["fixed"]), str(files["moving"]), "-o", str(tmp_path / "out"), "--model", "auto", "--device", "auto")
    assert code == 2 and asked == ["auto"] and seen == {"image": torch.device("meta"), "model": torch.device("meta")}
