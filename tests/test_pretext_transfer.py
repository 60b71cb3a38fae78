"""What fine-tuning sees must match what pretraining saw: intensities, resize and the encoder itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsuite.backbones import EncoderSpec
from medsuite.checkpoints import save_checkpoint
from medsuite.config import load_pipeline
from medsuite.data.intensity import rule_for_modality
from medsuite.pretext.model import PretextNet
from medsuite.pretext.pretrain import PretextConfig

PIPELINE = "pretext_cardiac"


def test_pretraining_normalises_with_the_segmentation_mr_rule():
    assert PretextConfig().intensity == rule_for_modality("MR")
    assert load_pipeline(PIPELINE, PretextConfig).intensity == rule_for_modality("MR")


def test_pretext_encoder_loads_into_the_segmentation_network(tmp_path):
    from medsuite.segmentation.config import SegmentationConfig
    from medsuite.segmentation.models import make_model
    from medsuite.segmentation.train import load_init

    backbone = load_pipeline(PIPELINE, PretextConfig).backbone
    torch.manual_seed(0)
    pretext = PretextNet(backbone)
    spec = EncoderSpec.model_validate(backbone)
    save_checkpoint(tmp_path / "encoder.pt", kind="encoder", state=pretext.encoder.state_dict(), config={"backbone": spec.model_dump(mode="json")})
    model = make_model(SegmentationConfig.model_validate({"model": {"name": "neunet"}, "backbone": backbone}))
    load_init(model, tmp_path / "encoder.pt")
    x = torch.rand(1, 1, 32, 32)
    for ours, theirs in zip(pretext.encoder.eval()(x), model.encoder.eval()(x)):
        assert torch.equal(ours, theirs)
    assert model(x).shape == (1, 4, 32, 32)


def test_location_targets_run_base_to_apex_in_every_source():
    """ACDC's storage order and the DICOM / M&Ms geometry must agree (skips without the shared data)."""
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (data / "cardiac_multiview").is_dir() or not (data / "acdc_h5").is_dir():
        pytest.skip("shared cardiac data absent")
    import h5py
    import nibabel as nib

    from medsuite.pretext.exams import read_dicom_exams
    from medsuite.pretext.geometry import APEX_DIRECTION_RAS, planes_from_affine, slice_locations

    # ACDC h5 (no geometry, index order used): the labelled heart shrinks from the base (index 0) to the apex.
    for name in ("patient001_frame01.h5", "patient050_frame01.h5"):
        with h5py.File(data / "acdc_h5" / name, "r") as handle:
            area = (np.asarray(handle["label"]) > 0).reshape(len(handle["label"]), -1).sum(1)
        labelled = area[area > 0]
        assert np.corrcoef(np.arange(len(labelled)), labelled)[0, 1] < -0.5
    # The DICOM SAX localiser is prescribed along the long axis, so the sign of the rule is unambiguous,
    # and location 0 is its slice farthest from the apex.
    sax = next(v for e in read_dicom_exams(data / "cardiac_multiview" / "cmr_plan_056B") for v in e.views if v.kind == "SAX" and len(v.planes) > 1)
    towards_apex = np.array([p.origin @ APEX_DIRECTION_RAS for p in sax.planes])
    assert abs(sax.planes[0].normal @ APEX_DIRECTION_RAS) > 0.9
    assert np.argmin(slice_locations(sax.planes)) == np.argmin(towards_apex)
    # M&Ms stores its stack base first, like ACDC: the geometric locations rise with the index.
    image = nib.load(str(data / "cardiac_multiview" / "cinema_examples" / "mnms" / "sax_ed.nii.gz"))
    np.testing.assert_allclose(slice_locations(planes_from_affine(image.affine, image.shape)), np.linspace(0, 1, image.shape[2]), atol=1e-6)
