"""`medsuite register`: the same input and options give the same bytes of every image it writes, for any thread count."""

from __future__ import annotations

import json

import SimpleITK as sitk
import torch

from medsuite.commands.register import _config
from medsuite.data.samples import make_pathological_pair, write_pair
from medsuite.registration.inference import OUTPUTS, register_files

TIMING_KEYS = {"seconds", "seconds_by_stage", "created_utc", "runtime"}  # runtime: the thread counts, which differ by design


def _run(inputs, out, threads: int):
    torch_threads, itk_threads = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        return register_files(inputs["fixed"], inputs["moving"], out, _config(None), moving_labels=inputs["moving_labels"], checkpoint=None, steps=8)
    finally:
        torch.set_num_threads(torch_threads)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)


def test_rerun_and_other_thread_count_give_the_same_bytes(tmp_path):
    inputs = write_pair(make_pathological_pair(3, resolution_mm=4.0), tmp_path / "pair")
    runs = [_run(inputs, tmp_path / f"run{i}", threads) for i, threads in enumerate((1, 1, 2))]
    names = [*OUTPUTS.values(), "warped_labels.nii.gz"]
    for folder, report in runs[1:]:
        for name in names:
            assert (folder / name).read_bytes() == (runs[0][0] / name).read_bytes(), name
        strip = lambda r: {k: v for k, v in r.items() if k not in TIMING_KEYS}  # noqa: E731
        assert json.dumps(strip(report), sort_keys=True) == json.dumps(strip(runs[0][1]), sort_keys=True)


def test_device_cpu_and_auto_without_cuda_give_the_same_bytes(tmp_path, monkeypatch):
    from medsuite.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    inputs = write_pair(make_pathological_pair(3, resolution_mm=8.0), tmp_path / "pair")
    for device in ("cpu", "auto"):
        try:
            main(["register", str(inputs["fixed"]), str(inputs["moving"]), "-o", str(tmp_path / device), "--steps", "4", "--threads", "1", "--quiet", "--device", device])
        except SystemExit as exc:
            assert exc.code in (0, None)
        assert json.loads((tmp_path / device / "report.json").read_text())["parameters"]["device"] == "cpu"
    for name in OUTPUTS.values():
        assert (tmp_path / "cpu" / name).read_bytes() == (tmp_path / "auto" / name).read_bytes(), name
