"""`medsuite models export`: a MONAI bundle that verify_metadata accepts offline, that `monai.bundle run` and
`medsuite segment --model BUNDLE/` run with the checkpoint's results, and whose TorchScript matches the eager model."""

from __future__ import annotations

import json
import runpy
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from medsuite.checkpoints import save_checkpoint
from medsuite.cli import main
from medsuite.errors import MedsuiteError
from medsuite.export.bundle import TORCHSCRIPT_TOLERANCE, export_bundle, load_bundle, network_from_pipeline
from medsuite.io import write_nifti
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.infer import segment_batch
from medsuite.segmentation.models import make_model
from medsuite.segmentation.synthetic import synthetic_short_axis

CARD = """# tiny.pt: a test model

**Research use only. Not a medical device.**

## Limitations
- Untrained: its masks mean nothing.
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    config = SegmentationConfig.model_validate({"data": {"image_size": [32, 32]}, "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2, 2]}})
    torch.manual_seed(0)
    checkpoint = save_checkpoint(root / "tiny.pt", kind="segmentation", state=make_model(config).state_dict(), config=config.model_dump(mode="json"), card="acdc_h5")
    (root / "MODEL_CARD.md").write_text(CARD)
    export_bundle(checkpoint, root / "bundle", version="1.2.0", changelog="first export")
    images = root / "images"
    for seed in (0, 1):
        vol, _ = synthetic_short_axis(shape=(40, 36, 4), seed=seed)
        write_nifti(images / f"case{seed}.nii.gz", vol.array, vol.affine)
    return {"root": root, "checkpoint": checkpoint, "bundle": root / "bundle", "images": images, "config": config}


def monai_bundle_cli(monkeypatch, *args: str) -> None:
    """``python -m monai.bundle ARGS`` run in this interpreter (the same entry point, without a second
    start-up of torch and MONAI)."""
    monkeypatch.setattr(sys, "argv", ["monai.bundle", *args])
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=False)


def test_metadata_carries_the_cards(bundle):
    metadata = json.loads((bundle["bundle"] / "configs" / "metadata.json").read_text())
    assert metadata["version"] == "1.2.0" and metadata["changelog"] == {"1.2.0": "first export"}
    assert metadata["label_names"] == {"0": "background", "1": "rv_cavity", "2": "myocardium", "3": "lv_cavity"}  # the card's label_map
    assert "Research use only" in metadata["intended_use"] and metadata["limitations"] == "Untrained: its masks mean nothing."
    assert metadata["training_data"]["card_id"] == "acdc_h5" and "CC BY-NC-SA 4.0" in metadata["training_data"]["licence"]
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32]
    assert (bundle["bundle"] / "docs" / "README.md").read_text().startswith("# tiny.pt: a test model")
    assert {p.name for p in (bundle["bundle"] / "models").iterdir()} == {"model.pt", "model.ts"}
    assert metadata["task"].startswith("Segmentation of right ventricle cavity, left ventricle myocardium, left ventricle cavity")
    assert load_bundle(bundle["bundle"]).payload["labels"] == {"1": "rv_cavity", "2": "myocardium", "3": "lv_cavity"}


def test_verify_metadata_passes_offline_with_the_bundled_schema(bundle, monkeypatch, caplog):
    configs = bundle["bundle"] / "configs"
    with caplog.at_level("INFO"):
        monai_bundle_cli(monkeypatch, "verify_metadata", "--meta_file", str(configs / "metadata.json"), "--filepath", str(configs / "metadata_schema.json"))
    assert "metadata is verified with no error" in caplog.text and "skipped downloading" in caplog.text


def test_verify_metadata_rejects_a_bundle_without_a_task(bundle, tmp_path):
    from monai.bundle import verify_metadata

    metadata = json.loads((bundle["bundle"] / "configs" / "metadata.json").read_text())
    del metadata["task"]
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="task"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(bundle["bundle"] / "configs" / "metadata_schema.json"))


def test_torchscript_matches_the_eager_model(bundle):
    eager = network_from_pipeline(bundle["config"].model_dump(mode="json"))
    eager.load_state_dict(torch.load(bundle["bundle"] / "models" / "model.pt", weights_only=True))
    eager.eval()
    scripted = torch.jit.load(str(bundle["bundle"] / "models" / "model.ts"))
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(7))  # not the input it was traced with
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), eager(x).numpy(), rtol=0, atol=TORCHSCRIPT_TOLERANCE)


def test_monai_bundle_run_and_segment_model_bundle_give_the_checkpoints_masks(bundle, monkeypatch):
    root = bundle["root"]
    assert segment_batch([bundle["images"]], root / "by_checkpoint", checkpoint=bundle["checkpoint"], quiet=True) == 0
    monai_bundle_cli(monkeypatch, "run", "--config_file", str(bundle["bundle"] / "configs" / "inference.json"),
                     "--bundle_root", str(bundle["bundle"]), "--dataset_dir", str(bundle["images"]), "--output_dir", str(root / "by_monai"))
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(bundle["images"]), "-o", str(root / "by_cli"), "--model", str(bundle["bundle"]), "--quiet"])
    assert exit_info.value.code == 0
    for case in ("case0", "case1"):
        expected = np.asarray(nib.load(str(root / "by_checkpoint" / f"{case}_seg.nii.gz")).dataobj)
        for folder in ("by_monai", "by_cli"):
            np.testing.assert_array_equal(np.asarray(nib.load(str(root / folder / f"{case}_seg.nii.gz")).dataobj), expected)


def test_a_tampered_bundle_is_refused(bundle, tmp_path):
    import shutil

    copy = shutil.copytree(bundle["bundle"], tmp_path / "bundle")
    weights = copy / "models" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(MedsuiteError, match="does not match the sha256"):
        load_bundle(copy)


def test_export_refuses_a_foreign_folder_and_unknown_format(bundle, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(MedsuiteError, match="exists and is not a bundle"):
        export_bundle(bundle["checkpoint"], tmp_path)
    with pytest.raises(MedsuiteError, match="cannot be created"):
        export_bundle(bundle["checkpoint"], tmp_path / "notes.txt" / "bundle")  # a file where a folder must go
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "export", str(bundle["checkpoint"]), "-o", str(tmp_path / "b"), "--format", "onnx"])
    assert exit_info.value.code == 2 and "unknown export format 'onnx'" in capsys.readouterr().err


def test_models_list_shows_the_shipped_models_with_their_cards(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "list", "--card", "neunet_acdc"])
    assert exit_info.value.code == 0 and "## Limitations" in capsys.readouterr().out
    from medsuite.export.catalog import shipped_models

    models = {m.name: m for m in shipped_models()}
    assert models["neunet_acdc"].kind == "segmentation" and models["neunet_acdc"].data_card == "acdc_h5"
    assert models["neunet_acdc"].title.startswith("cardiac short-axis segmentation")
