"""Whole-process registrations that benchmarks/registration.py times beside `medsuite register`.

    python benchmarks/registration_runners.py ants FIXED MOVING MOVING_LABELS OUT
    python benchmarks/registration_runners.py plain FIXED MOVING MOVING_LABELS OUT

``ants``: what a user's antspyx script does: read the pair, SyN (antspyx's default: affine then SyN, every
core, or ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``), write the warped image and labels; the transform files are kept in OUT for scoring.
``plain``: medsuite's instance optimisation without GIRNet's lesion modules (VoxelMorph-style: local NCC +
diffusion, no mask, no inpainting, no inverse term), writing ddf.nii.gz, warped.nii.gz and warped labels.
Each mode imports only what it needs, so start-up is part of what is timed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def run_ants(fixed: str, moving: str, labels: str, out: Path) -> None:
    import ants

    fixed_image, moving_image = ants.image_read(fixed), ants.image_read(moving)
    result = ants.registration(fixed_image, moving_image, type_of_transform="SyN")
    ants.image_write(result["warpedmovout"], str(out / "warped.nii.gz"))
    warped_labels = ants.apply_transforms(fixed_image, ants.image_read(labels), result["fwdtransforms"], interpolator="nearestNeighbor")
    ants.image_write(warped_labels, str(out / "warped_labels.nii.gz"))
    for index, path in enumerate(result["fwdtransforms"]):  # warp field then affine, as ANTs applies them
        shutil.copy(path, out / f"fwd{index}{''.join(Path(path).suffixes)}")


def run_plain(fixed: str, moving: str, labels: str, out: Path) -> None:
    import numpy as np

    from medsuite.commands.register import _config
    from medsuite.io import read_3d, write_nifti
    from medsuite.registration.inference import register_volumes
    from medsuite.runtime import configure_runtime

    configure_runtime(int(os.environ["MEDSUITE_BENCH_THREADS"]) if os.environ.get("MEDSUITE_BENCH_THREADS") else None)
    config = _config(None)
    config = config.model_copy(update={"losses": config.losses.model_copy(update={"symmetric": 0.0})})
    fixed_volume, moving_volume = read_3d(fixed), read_3d(moving)
    result = register_volumes(fixed_volume, moving_volume, config, use_segmentation=False, use_inpainting=False)
    ddf_ras = result.ddf_lps * np.array([-1.0, -1.0, 1.0])
    write_nifti(out / "ddf.nii.gz", ddf_ras[:, :, :, None, :].astype(np.float32), fixed_volume.affine, intent="displacement vector")
    write_nifti(out / "warped.nii.gz", result.warped, fixed_volume.affine)
    label_volume = read_3d(labels)
    write_nifti(out / "warped_labels.nii.gz", result.warp_moving(np.asarray(label_volume.array), nearest=True).astype(np.uint8), fixed_volume.affine)


if __name__ == "__main__":
    mode, fixed_path, moving_path, labels_path, out_dir = sys.argv[1:6]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    {"ants": run_ants, "plain": run_plain}[mode](fixed_path, moving_path, labels_path, Path(out_dir))
