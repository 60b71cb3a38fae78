"""The shared batch runner: case discovery, resume, failures logged and the run goes on, exit codes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medsuite.batch import find_cases, run_batch
from medsuite.errors import MedsuiteError
from medsuite.io import read_3d, write_nifti


def _process_factory(out_dir, calls):
    def process(case):
        calls.append(case.name)
        vol = read_3d(case.path)
        write_nifti(out_dir / f"{case.name}_out.nii.gz", (vol.array > vol.array.mean()).astype(np.uint8), vol.affine, inputs=[case.path])
        return {"voxels": int(vol.array.size)}

    return process


def test_cases_from_files_folders_and_dicom_series(tmp_path):
    for name in ("a.nii.gz", "b.nii", "c.mha"):
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"x")
    series = tmp_path / "in" / "ct_series"
    shutil.copytree(get_testdata_file("CT_small.dcm", download=False).rsplit("/", 1)[0] + "/dicomdirtests/98892001/CT5N", series)
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    names = [c.name for c in find_cases([tmp_path / "in"])]
    assert names == ["a", "b", "c", "ct_series"]
    with pytest.raises(MedsuiteError, match="given twice"):
        find_cases([tmp_path / "in" / "a.nii.gz", tmp_path / "in" / "a.nii.gz"])
    with pytest.raises(MedsuiteError, match="no such file"):
        find_cases([tmp_path / "nope"])
    with pytest.raises(MedsuiteError, match="not a supported image format"):
        find_cases([tmp_path / "in" / "notes.txt"])


def test_failures_are_logged_resume_skips_done_cases(tmp_path):
    inputs = tmp_path / "in"
    rng = np.random.default_rng(0)
    for name in ("one", "two"):
        write_nifti(inputs / f"{name}.nii.gz", rng.normal(size=(6, 6, 6)).astype(np.float32), np.eye(4))
    (inputs / "broken.nii.gz").write_bytes(b"corrupt")
    out, calls = tmp_path / "out", []
    cases = find_cases([inputs])
    code = run_batch(cases, out, _process_factory(out, calls), outputs_of=lambda c: [out / f"{c.name}_out.nii.gz"], command="test", quiet=True)
    assert code == 1 and sorted(calls) == ["broken", "one", "two"]
    report = json.loads((out / "report.json").read_text())
    assert report["cases"]["one"]["status"] == "done" and report["cases"]["one"]["voxels"] == 216
    assert report["cases"]["broken"]["status"] == "failed" and "cannot read as NIfTI" in report["cases"]["broken"]["error"]
    assert report["summary"] == {"cases": 3, "failed": 1, "done_or_skipped": 2}
    errors = (out / "errors.tsv").read_text().splitlines()
    assert errors[0] == "case\tinput\terror" and errors[1].startswith("broken\t")
    assert "failed broken" in (out / "batch.log").read_text()
    calls.clear()
    (inputs / "broken.nii.gz").unlink()
    code = run_batch(find_cases([inputs]), out, _process_factory(out, calls), outputs_of=lambda c: [out / f"{c.name}_out.nii.gz"], command="test", resume=True, quiet=True)
    assert code == 0 and calls == []  # both remaining cases were already done
    report = json.loads((out / "report.json").read_text())
    assert report["cases"]["one"]["status"] == "skipped (done)" and report["cases"]["one"]["voxels"] == 216
    assert not (out / "errors.tsv").exists()
