"""The registration path's hand-written torch ops equal the MONAI ops they replace, and that path imports no MONAI."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from monai.losses import DiffusionLoss
from monai.networks.blocks import DVF2DDF, Warp
from monai.networks.layers import GaussianFilter

from scipy import ndimage

from medsuite.io import write_nifti
from medsuite.registration.fields import diffusion, gaussian_smooth, integrate, warp

SHAPE = (2, 3, 9, 8, 7)


def _random(seed: int, shape: tuple[int, ...] = SHAPE, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_warp_is_monais_warp(mode: str, padding: str):
    image, ddf = _random(0), _random(1, scale=2.0)  # displacements reaching past the border
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = Warp(mode=mode, padding_mode=padding)(image, ddf)
    torch.testing.assert_close(warp(image, ddf, mode, padding), expected, rtol=1e-5, atol=1e-5)  # the grid is scaled before the add


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_warp_on_several_threads_gives_the_bits_of_one(threads: int):
    # warp cuts the output into one slab per thread (grid_sample's CPU kernel parallelises over the batch):
    # the samples and the field's gradient must be bit-identical to one thread's, odd row counts included.
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 2, 15, 9, 7, generator=generator)  # 15 rows: 3 slabs on 3 or 4 threads, 1 on 2
    ddf = (2 * torch.rand(1, 3, 15, 9, 7, generator=generator) - 1).requires_grad_(True)
    weights = torch.rand(1, 2, 15, 9, 7, generator=generator)
    results = []
    for count in (1, threads):
        previous = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            out = warp(image, ddf)
            (gradient,) = torch.autograd.grad((out * weights).sum(), ddf)
        finally:
            torch.set_num_threads(previous)
        results.append((out, gradient))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_integrate_is_monais_dvf2ddf_with_gradients():
    velocity = _random(2, scale=1.5).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = DVF2DDF(num_steps=5, mode="bilinear", padding_mode="zeros")(velocity)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), velocity)
    ours = integrate(velocity, 5)
    (grad,) = torch.autograd.grad(ours.square().sum(), velocity)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sigma", [[0.5, 1.0, 0.0], [2.0, 2.0, 2.0]])
def test_gaussian_smooth_is_monais_gaussian_filter(sigma: list[float]):
    image = _random(3, (1, 2, 12, 11, 10))
    torch.testing.assert_close(gaussian_smooth(image, sigma), GaussianFilter(3, sigma)(image), rtol=1e-6, atol=1e-6)


def test_diffusion_is_monais_diffusion_loss():
    field = _random(4).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = DiffusionLoss(normalize=False, reduction="none")(field)
    torch.testing.assert_close(diffusion(field), expected, rtol=1e-6, atol=1e-6)


def test_the_register_path_and_every_help_import_no_monai(tmp_path):
    """``import monai`` costs ~3 s and ~240 MB per process (issue #16), highdicom ~0.25 s: the default
    ``medsuite register`` (no model, NIfTI outputs), run here on a small pair, and ``--help`` must not pay them."""
    rng = np.random.default_rng(0)
    fixed = ndimage.gaussian_filter(rng.random((24, 24, 24)), 2).astype(np.float32)
    pair = [write_nifti(tmp_path / f"{name}.nii.gz", array, np.diag([2.0, 2.0, 2.0, 1.0])) for name, array in (("fixed", fixed), ("moving", np.roll(fixed, 1, 0)))]
    code = (
        "import sys, click\n"
        "from medsuite.cli import main\n"
        "try:\n"
        f"    main(['register', {str(pair[0])!r}, {str(pair[1])!r}, '-o', {str(tmp_path / 'out')!r}, '--steps', '2', '--quiet'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "import medsuite.registration.inference, medsuite.registration.pairs, medsuite.runtime, medsuite.provenance\n"
        "from medsuite import cli\n"
        "def paths(command, prefix):\n"
        "    yield prefix\n"
        "    for name, sub in getattr(command, 'commands', {}).items():\n"
        "        yield from paths(sub, [*prefix, name])\n"
        "cli._build()\n"
        "helps = list(paths(cli._built[0], []))\n"
        "for path in helps:\n"
        "    try:\n"
        "        cli.main([*path, '--help'])\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code in (0, None), (path, exit.code)\n"
        "assert len(helps) > 20, helps\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('monai', 'highdicom'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "warped.nii.gz").exists()
