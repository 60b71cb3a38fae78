"""Inference: load a trained model once, segment volumes in their own geometry, and the batch
``segment`` job (NIfTI files / DICOM series folders in, ``<case>_seg.nii.gz`` + report.json out)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import ResizeWithPadOrCrop, ScaleIntensityRangePercentiles

from medsuite.batch import Case, find_cases, run_batch
from medsuite.errors import MedsuiteError
from medsuite.io import Volume, read_3d, write_json, write_nifti
from medsuite.segmentation.data import resize_images
from medsuite.segmentation.models import count_parameters, load_trained
from medsuite.segmentation.predict import predict_volume

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "segmentation"
DEFAULT_CHECKPOINT = ASSETS / "neunet_acdc.pt"
# the same per-volume normalisation the data layer applies to MR training volumes
NORMALISE = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)


def stack_axis(vol: Volume) -> int:
    """The axis the 2D model slices along: the coarsest spacing (short-axis slice thickness), last on ties."""
    spacing = np.round(vol.spacing, 3)
    return int(max(range(3), key=lambda a: (spacing[a], a)))


class Segmenter:
    """A trained model loaded once; ``segmenter(volume)`` gives a uint8 label volume on the input grid."""

    def __init__(self, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"):
        self.path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        trained = load_trained(self.path, device)
        self.config, self.card, self.labels, self.model = trained.config, trained.card, trained.labels, trained.model
        self.device = torch.device(device)
        self.name = f"{self.config.model.name} ({self.path.name}, card {self.card})"
        self.parameters = count_parameters(self.model)

    def __call__(self, vol: Volume) -> np.ndarray:
        labels = predict_volume(self.model, self._normalised(vol), self.config, slice_axis=stack_axis(vol))
        return labels.numpy().astype(np.uint8)

    def _normalised(self, vol: Volume) -> torch.Tensor:
        return torch.as_tensor(NORMALISE(torch.as_tensor(np.asarray(vol.array, dtype=np.float32))))

    def network_input(self, vol: Volume) -> torch.Tensor:
        """One network input: the middle slice as a 2D model sees it (resized, or its central patch), or a 3D
        model's central sliding-window patch."""
        if self.config.model.spatial_dims == 3:
            roi = self.config.model.roi_size or tuple(vol.array.shape)
            return ResizeWithPadOrCrop(roi)(self._normalised(vol)[None])[None].as_tensor()
        image = self._normalised(vol).movedim(stack_axis(vol), 0)
        middle = image[image.shape[0] // 2][None, None]
        if self.config.data.inplane == "native":
            return ResizeWithPadOrCrop(self.config.data.image_size)(middle[0])[None].as_tensor()
        return resize_images(middle, self.config.data.image_size)


def label_volumes_ml(labels: np.ndarray, voxel_ml: float, names: dict[int, str]) -> dict[str, float]:
    counts = np.bincount(labels.ravel(), minlength=max(names) + 1)
    return {name: round(float(counts[value]) * voxel_ml, 3) for value, name in names.items()}


def output_of(out_dir: Path, case: Case) -> Path:
    return out_dir / f"{case.name}_seg.nii.gz"


def segment_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    frame: int | None = None,
    resume: bool = False,
    device: str = "cpu",
    quiet: bool = False,
) -> int:
    """Segment every case; returns the exit code (0 all done, 1 some case failed)."""
    out_dir = Path(out_dir)
    # masks this job wrote earlier into an input folder are outputs, not new cases
    cases = [c for c in find_cases(inputs) if not (c.name.endswith("_seg") and c.path.parent.resolve() == out_dir.resolve())]
    if not cases:
        raise MedsuiteError(out_dir, "the inputs hold only masks written by segment", "give the image files or folders")
    segmenter = Segmenter(checkpoint, device=device)
    examples: list[torch.Tensor] = []  # the first case's middle slice: spiking models' energy depends on real data

    def process(case: Case) -> dict[str, Any]:
        vol = read_3d(case.path, frame=frame)
        labels = segmenter(vol)
        if not examples:
            examples.append(segmenter.network_input(vol))
        target = write_nifti(output_of(out_dir, case), labels, vol.affine, inputs=[case.path])
        return {"output": target.name, "model": segmenter.name, "shape": list(labels.shape), "label_volumes_ml": label_volumes_ml(labels, vol.voxel_volume_ml, segmenter.labels)}

    parameters = {"model": str(segmenter.path), "frame": frame, "device": device, "image_size": list(segmenter.config.data.image_size)}
    code = run_batch(cases, out_dir, process, outputs_of=lambda c: [output_of(out_dir, c)], command="segment", parameters=parameters, resume=resume, quiet=quiet)
    report = json.loads((out_dir / "report.json").read_text())
    report["labels"] = {str(k): v for k, v in segmenter.labels.items()}
    report["model"] = {"checkpoint": str(segmenter.path), "name": segmenter.config.model.name, "card": segmenter.card, "parameters": segmenter.parameters}
    if examples:
        report["energy"] = _energy(segmenter, examples[0])
    write_json(out_dir / "report.json", report)
    return code


def _energy(segmenter: Segmenter, example: torch.Tensor) -> dict[str, Any]:
    """Inference energy estimate (45 nm convention) of one network input cut from a real case."""
    from medsuite.backbones.energy import estimate_energy

    estimate = estimate_energy(segmenter.model, example.to(segmenter.device))
    return {k: v for k, v in estimate.items() if k != "per_layer"} | {"per": "one network input cut from the first case (a 2D model's middle slice, a 3D model's central patch)"}
