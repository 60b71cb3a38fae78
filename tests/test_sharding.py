"""Job-array parts: ``segment --num-parts 3 --part-id I`` then ``medsuite merge`` gives a single run's masks
(byte for byte), report (timings and dates aside) and errors.tsv; merge refuses mixed, missing or unfinished parts."""

from __future__ import annotations

import json

import pytest

from medsuite.cli import main
from medsuite.io import write_nifti
from medsuite.segmentation.synthetic import synthetic_short_axis
from medsuite.sharding import Part

TIMINGS = {"created_utc", "seconds", "merged_from"}


def _cli(*args) -> int:
    with pytest.raises(SystemExit) as stop:
        main([*map(str, args)])
    return stop.value.code


@pytest.fixture
def case_folder(tmp_path):
    folder = tmp_path / "cases"
    for k in range(7):
        vol, _ = synthetic_short_axis(shape=(36 + 2 * k, 32, 3 + k % 2), seed=k)
        write_nifti(folder / f"case{k:02d}.nii.gz", vol.array, vol.affine)
    (folder / "broken.nii.gz").write_bytes(b"not a nifti")  # one failing case: errors.tsv merges too
    return folder


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    return value


def test_parts_partition_the_sorted_cases():
    names = [f"c{k}" for k in (5, 1, 9, 3, 7, 2, 8)]
    parts = [Part(3, i).select(names, key=str) for i in range(3)]
    assert parts == [["c1", "c5", "c9"], ["c2", "c7"], ["c3", "c8"]] and Part().select(names, key=str) == names
    assert Part(3, 1).file("report.json") == "report.part-1-of-3.json" and Part().file("errors.tsv") == "errors.tsv"


def test_three_parts_merged_equal_one_run(tmp_path, tiny_checkpoint, case_folder):
    single, split = tmp_path / "single", tmp_path / "split"
    assert _cli("segment", case_folder, "-o", single, "--model", tiny_checkpoint, "--device", "cpu", "--quiet") == 1
    for part in range(3):
        code = _cli("segment", case_folder, "-o", split, "--model", tiny_checkpoint, "--device", "cpu", "--quiet", "--num-parts", 3, "--part-id", part)
        assert code == (1 if part == 0 else 0)  # 'broken' sorts first: part 0 holds the failing case
    assert not (split / "report.json").exists() and sorted(p.name for p in split.glob("report.part-*")) == [f"report.part-{i}-of-3.json" for i in range(3)]
    assert _cli("merge", split, "--quiet") == 1  # a failed case stays a failure after merging
    masks = sorted(p.name for p in single.glob("*_seg.nii.gz"))
    assert len(masks) == 7 and masks == sorted(p.name for p in split.glob("*_seg.nii.gz"))
    for name in masks:
        assert (single / name).read_bytes() == (split / name).read_bytes()
    one, merged = (json.loads((folder / "report.json").read_text()) for folder in (single, split))
    assert _without_timings(merged) == _without_timings(one) and list(merged["cases"]) == sorted(one["cases"])
    assert [m["report"] for m in merged["merged_from"]] == [f"report.part-{i}-of-3.json" for i in range(3)]
    assert sorted((split / "errors.tsv").read_text().splitlines()) == sorted((single / "errors.tsv").read_text().splitlines())


def test_merge_refuses_mixed_missing_and_unfinished_parts(tmp_path, tiny_checkpoint, case_folder, capsys):
    out = tmp_path / "out"
    for part in (0, 2):
        _cli("segment", case_folder, "-o", out, "--model", tiny_checkpoint, "--device", "cpu", "--quiet", "--num-parts", 3, "--part-id", part)
    assert _cli("merge", out) == 2 and "part 1 of 3 missing" in capsys.readouterr().err
    _cli("segment", case_folder, "-o", out, "--model", tiny_checkpoint, "--device", "cpu", "--quiet", "--num-parts", 3, "--part-id", 1, "--frame", 0)
    assert _cli("merge", out) == 2 and "report.part-1-of-3.json: was run with another parameters (frame)" in capsys.readouterr().err
    report = out / "report.part-1-of-3.json"
    unfinished = json.loads(report.read_text())
    del unfinished["summary"]
    report.write_text(json.dumps(unfinished))
    assert _cli("merge", out) == 2 and "has not finished" in capsys.readouterr().err
    assert not (out / "report.json").exists()
    assert _cli("segment", case_folder, "-o", out, "--model", tiny_checkpoint, "--num-parts", 3, "--part-id", 3) == 2
    assert "--part-id: 3 is not between 0 and --num-parts - 1 = 2" in capsys.readouterr().err
