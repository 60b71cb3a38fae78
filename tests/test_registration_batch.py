"""`medsuite register --pairs` and atlas-to-folder batches: one folder per pair, errors.tsv, exit codes, --continue."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from medsuite.cli import main
from medsuite.data.samples import load_mni152
from medsuite.io import write_nifti


def _register(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["register", *args])
    return exit_info.value.code or 0, capsys.readouterr().err.strip()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An 8 mm MNI152 atlas with labels, four shifted copies of it, and a few-step pipeline."""
    folder = tmp_path_factory.mktemp("batch")
    t1, tissue = load_mni152(8.0)
    atlas = write_nifti(folder / "atlas.nii.gz", t1.array, t1.affine)
    atlas_labels = write_nifti(folder / "atlas_labels.nii.gz", tissue.array, t1.affine)
    scans = folder / "scans"
    for i in range(4):
        affine = t1.affine.copy()
        affine[:3, 3] += [2.0 * i, -1.5 * i, 1.0]
        write_nifti(scans / f"scan{i}.nii.gz", t1.array * (1 + 0.1 * i), affine)
        write_nifti(folder / "labels" / f"scan{i}.nii.gz", tissue.array, affine)
    pipeline = folder / "tiny.yaml"
    pipeline.write_text(yaml.safe_dump({"prealign_iterations": 10, "instance": {"levels": [2, 1], "steps": [3, 2], "mask_level": 2, "min_steps": 2}}))
    return folder, atlas, atlas_labels, scans, pipeline


def _pairs_csv(folder, rows) -> str:
    target = folder / "pairs.csv"
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "fixed", "moving", "moving_labels", "fixed_labels"])
        writer.writerows(rows)
    return str(target)


def test_four_pairs_one_corrupt_then_continue_finishes_only_that_pair(tiny, tmp_path, capsys):
    folder, atlas, atlas_labels, scans, pipeline = tiny
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not a nifti at all")
    rows = [[f"p{i}", str(atlas), str(scans / f"scan{i}.nii.gz"), str(folder / "labels" / f"scan{i}.nii.gz"), str(atlas_labels)] for i in range(3)]
    rows.append(["p3", str(atlas), str(corrupt), "", ""])
    pairs = _pairs_csv(tmp_path, rows)
    out = tmp_path / "out"
    options = ["--pipeline", str(pipeline), "--model", "none", "--threads", "1", "--quiet"]
    code, err = _register(capsys, "--pairs", pairs, "-o", str(out), *options)
    assert code == 1, err
    errors = (out / "errors.tsv").read_text().splitlines()
    assert len(errors) == 2 and errors[1].startswith("p3\t") and "corrupt.nii.gz" in errors[1]
    for i in range(3):
        assert (out / f"p{i}" / "composite.h5").is_file() and (out / f"p{i}" / "inverse_ddf.nii.gz").is_file()
    summary = {row["id"]: row for row in csv.DictReader(open(out / "summary.csv"))}
    assert summary["p3"]["status"] == "failed" and "corrupt.nii.gz" in summary["p3"]["error"]
    assert all(summary[f"p{i}"]["status"] == "done" for i in range(3))
    assert float(summary["p0"]["dice_mean"]) > 0.7 and "1:" in summary["p0"]["dice_per_label"]
    assert float(summary["p1"]["folding_percent"]) >= 0 and float(summary["p1"]["seconds"]) > 0

    done_before = {i: (out / f"p{i}" / "report.json").stat().st_mtime_ns for i in range(3)}
    t1, _ = load_mni152(8.0)
    write_nifti(corrupt, t1.array, t1.affine)  # the user repairs the file
    code, err = _register(capsys, "--pairs", pairs, "-o", str(out), "--continue", *options)
    assert code == 0, err
    assert not (out / "errors.tsv").exists()
    assert {i: (out / f"p{i}" / "report.json").stat().st_mtime_ns for i in range(3)} == done_before  # not redone
    assert (out / "p3" / "composite.h5").is_file()
    report = json.loads((out / "report.json").read_text())
    assert [report["cases"][f"p{i}"]["status"] for i in range(4)] == ["skipped (done)"] * 3 + ["done"]
    summary = {row["id"]: row for row in csv.DictReader(open(out / "summary.csv"))}
    assert [summary[f"p{i}"]["status"] for i in range(4)] == ["done"] * 4 and summary["p3"]["dice_mean"] == ""


def test_one_atlas_to_a_folder(tiny, tmp_path, capsys):
    folder, atlas, _, scans, pipeline = tiny
    out = tmp_path / "atlas_out"
    code, err = _register(capsys, str(atlas), str(scans), "-o", str(out), "--pipeline", str(pipeline), "--model", "none", "--threads", "1", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"scan{i}" for i in range(4)]
    assert len((out / "summary.csv").read_text().splitlines()) == 5


@pytest.mark.parametrize(
    "content, expected",
    [
        ("fixed,moving,colour\na.nii.gz,b.nii.gz,red\n", "unknown column"),
        ("moving\nb.nii.gz\n", "lacks the column"),
        ("fixed,moving\n", "lists no pairs"),
        ("id,fixed,moving\nx,a.nii.gz,b.nii.gz\nx,a.nii.gz,c.nii.gz\n", "repeats an id"),
        ("id,fixed,moving\n../up,a.nii.gz,b.nii.gz\n", "safe folder name"),
    ],
)
def test_bad_pairs_csv_is_one_line_exit_2(tmp_path, capsys, content, expected):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(content)
    code, err = _register(capsys, "--pairs", str(pairs), "-o", str(tmp_path / "out"), "--model", "none")
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err


def test_batch_usage_errors(tiny, tmp_path, capsys):
    _, atlas, _, scans, _ = tiny
    for args, expected in [([str(atlas), str(scans)], "needs -o"), (["--pairs", str(tmp_path / "p.csv"), str(atlas)], "not both"), ([str(atlas), str(atlas), "--continue"], "only applies to a batch")]:
        code, err = _register(capsys, *args)
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
