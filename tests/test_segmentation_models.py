"""The model factory, neU-Net's Haar inputs and sub-pixel upsampling, encoder --init (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from medsuite.checkpoints import save_checkpoint
from medsuite.errors import MedsuiteError
from medsuite.segmentation.config import MODEL_NAMES, SegmentationConfig
from medsuite.segmentation.models import make_model
from medsuite.segmentation.neunet import AnisotropicSubpixelUpsample, NeUNet
from medsuite.segmentation.train import load_init
from medsuite.segmentation.wavelets import haar_level

torch.set_num_threads(1)
TINY = {"kind": "cnn", "in_channels": 1, "channels": [4, 8, 16, 32], "strides": [1, 2, 2, 2], "norm": "instance"}


def tiny_config(name: str, dims: int) -> SegmentationConfig:
    return SegmentationConfig.model_validate({"model": {"name": name, "spatial_dims": dims}, "backbone": {**TINY, "spatial_dims": dims}})


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_factory_model_maps_input_to_class_logits(name: str, dims: int) -> None:
    torch.manual_seed(0)
    model = make_model(tiny_config(name, dims)).eval()
    side = 64 if name == "swinunetr" else 32  # Swin merges patches 5 times: 32 px would leave one voxel
    shape = (side,) * dims
    with torch.no_grad():
        out = model(torch.rand(1, 1, *shape))
    assert out.shape == (1, 4, *shape)
    assert torch.isfinite(out).all()


def test_haar_level_equals_pywavelets_up_to_band_sign() -> None:
    x = np.random.default_rng(0).random((8, 6)).astype(np.float32)
    bands = [b[0, 0].numpy() for b in haar_level(torch.as_tensor(x)[None, None], (2, 2))]
    approx, details = pywt.dwt2(x, "haar")
    np.testing.assert_allclose(bands[0], approx, atol=1e-6)
    for expected in details:  # the same three detail bands, in another order/sign convention
        assert any(np.allclose(np.abs(b), np.abs(expected), atol=1e-6) for b in bands[1:])
    assert sum(float((b**2).sum()) for b in bands) == pytest.approx(float((x**2).sum()), rel=1e-5)  # orthonormal


def test_haar_keeps_axes_with_factor_one() -> None:
    bands = haar_level(torch.rand(1, 1, 5, 16, 12), (1, 2, 2))
    assert len(bands) == 4 and bands[0].shape == (1, 1, 5, 8, 6)


def test_anisotropic_subpixel_upsample_places_channels_as_pixels() -> None:
    up = AnisotropicSubpixelUpsample(3, 1, 1, (1, 2, 2))
    with torch.no_grad():
        up.conv.weight.zero_()
        up.conv.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))  # channel r -> sub-pixel position r
    y = up(torch.zeros(1, 1, 3, 2, 2))
    assert y.shape == (1, 1, 3, 4, 4)
    np.testing.assert_array_equal(y[0, 0, 0, :2, :2].detach().numpy(), [[1, 2], [3, 4]])


def test_neunet_3d_with_thick_slice_strides() -> None:
    backbone = {**TINY, "spatial_dims": 3, "channels": [4, 8, 16], "strides": [1, [1, 2, 2], [1, 2, 2]]}
    model = NeUNet(backbone, out_channels=4)
    assert model(torch.rand(1, 1, 5, 33, 30)).shape == (1, 4, 5, 33, 30)


def test_neunet_wavelet_bands_reach_the_output() -> None:
    torch.manual_seed(0)
    model = make_model(tiny_config("neunet", 2)).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        before = model(x)
        for proj in model.proj.values():
            proj.weight.zero_()
        after = model(x)
    assert not torch.allclose(before, after)


def test_init_loads_pretrained_encoder(tmp_path) -> None:
    model = make_model(tiny_config("neunet", 2))
    donor = make_model(tiny_config("neunet", 2)).encoder
    torch.nn.init.constant_(next(donor.parameters()), 0.25)
    path = save_checkpoint(tmp_path / "enc.pt", kind="encoder", state=donor.state_dict(), config={"backbone": {**TINY, "spatial_dims": 2}})
    load_init(model, path)
    assert torch.equal(next(model.encoder.parameters()), next(donor.parameters()))
    with pytest.raises(MedsuiteError, match="cannot take encoder weights"):
        load_init(make_model(tiny_config("unet", 2)), path)


def test_init_fine_tunes_a_whole_segmentation_checkpoint(tmp_path) -> None:
    config = tiny_config("unet", 2)
    donor = make_model(config)
    torch.nn.init.constant_(next(donor.parameters()), 0.25)
    path = save_checkpoint(tmp_path / "seg.pt", kind="segmentation", state=donor.state_dict(), config=config.model_dump(mode="json"))
    model = make_model(config)
    load_init(model, path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), donor.state_dict().values()))
    with pytest.raises(MedsuiteError, match="do not fit"):
        load_init(make_model(tiny_config("neunet", 2)), path)


def test_monai_models_refuse_non_cnn_backbones() -> None:
    config = SegmentationConfig.model_validate({"model": {"name": "unet"}, "backbone": {**TINY, "kind": "snn", "spatial_dims": 2}})
    with pytest.raises(MedsuiteError, match="neunet"):
        make_model(config)
