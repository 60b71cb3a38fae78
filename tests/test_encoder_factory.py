"""The backbone switch: make_encoder builds the CNN encoder with the promised stage outputs."""

from __future__ import annotations

import pytest
import torch

from medsuite.backbones import EncoderSpec, make_encoder
from medsuite.errors import MedsuiteError


@pytest.mark.parametrize("dims,size", [(2, (40, 48)), (3, (16, 24, 24))])
def test_cnn_encoder_stage_shapes(dims, size):
    encoder = make_encoder(kind="cnn", spatial_dims=dims, channels=(8, 16, 32), strides=(1, 2, 2))
    features = encoder(torch.zeros(2, 1, *size))
    assert [f.shape[1] for f in features] == encoder.out_channels == [8, 16, 32]
    assert features[0].shape[2:] == size
    assert features[2].shape[2:] == tuple(s // 4 for s in size)


def test_anisotropic_strides_keep_thick_slices():
    encoder = make_encoder(EncoderSpec(spatial_dims=3, channels=(4, 8), strides=(1, (2, 2, 1))))
    assert encoder(torch.zeros(1, 1, 32, 32, 6))[1].shape[2:] == (16, 16, 6)


def test_spec_dict_and_overrides_agree():
    spec = {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8], "strides": [1, 2]}
    torch.manual_seed(0)
    a = make_encoder(spec)
    torch.manual_seed(0)
    b = make_encoder(**spec)
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(a(x)[-1], b(x)[-1])


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(MedsuiteError, match="unknown kind 'transformer'"):
        make_encoder(kind="transformer")
