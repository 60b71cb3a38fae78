"""benchmarks/registration.py's thread handling: every method gets the same thread count when one is given."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "registration.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("registration_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_threads_reach_medsuite_and_ants(monkeypatch):
    bench = _benchmark()
    for name in ("MEDSUITE_BENCH_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)  # monkeypatch restores them after the test
    files = {k: Path(f"/data/{k}.nii.gz") for k in ("fixed", "moving", "moving_labels")}
    bench.use_threads(None)
    assert "--threads" not in bench.METHODS["medsuite (default)"](files, Path("/out"))  # default: every core
    bench.use_threads(1)
    command = bench.METHODS["medsuite (default)"](files, Path("/out"))
    assert command[command.index("--threads") + 1] == "1"
    assert os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "1"  # what ANTs reads


def test_the_working_mm_method_runs_medsuite_on_a_valid_pipeline_copy(tmp_path):
    from medsuite.config import load_pipeline
    from medsuite.registration.config import RegistrationConfig

    bench = _benchmark()
    files = {k: tmp_path / f"{k}.nii.gz" for k in ("fixed", "moving", "moving_labels")}
    command = bench.METHODS["medsuite (working_mm 2)"](files, tmp_path / "out")
    config = load_pipeline(command[command.index("--pipeline") + 1], RegistrationConfig)
    assert config.instance.working_mm == 2.0
    assert config.model_copy(update={"instance": config.instance.model_copy(update={"working_mm": 0.0})}) == load_pipeline("registration_girnet", RegistrationConfig)
