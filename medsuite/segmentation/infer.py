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

from medsuite.batch import Case, find_cases, read_manifest, run_batch
from medsuite.checkpoints import load_model
from medsuite.data.labels import label_volumes_ml
from medsuite.errors import MedsuiteError
from medsuite.io import Volume, read_3d, write_json
from medsuite.segmentation import LABELS
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.data import resize_images
from medsuite.segmentation.evaluate import predict_volume
from medsuite.segmentation.models import count_parameters
from medsuite.sharding import WHOLE, Part

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
        from medsuite.export.bundle import is_bundle, load_bundle  # `medsuite models export` folders

        self.path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        loaded = load_bundle(self.path, device=device) if is_bundle(self.path) else load_model(self.path, "segmentation", device=device)
        self.config: SegmentationConfig = loaded.config
        self.card = loaded.payload.get("card")
        self.model = loaded.model
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




def segment_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    frame: int | None = None,
    resume: bool = False,
    device: str = "cpu",
    quiet: bool = False,
    part: Part = WHOLE,
    output_formats: Sequence[str] | None = None,
) -> int:
    """Segment every case (or one job-array ``part`` of them); returns the exit code (0 all done, 1 some case failed).

    ``output_formats`` adds DICOM-SEG / RTSTRUCT beside the NIfTI mask (medsuite.export.formats)."""
    from medsuite.export.formats import output_names, resolve_formats
    from medsuite.export.masks import algorithm_for, refuse_dicom_formats_without_dicom, write_mask_outputs

    refuse_dicom_formats_without_dicom(inputs, output_formats)
    out_dir = Path(out_dir)
    # masks this job wrote earlier into an input folder (its manifest lists them) are outputs, not new cases
    ours = {(out_dir / name).resolve() for name in read_manifest(out_dir / "manifest.json")} if out_dir.is_dir() else set()
    cases = [c for c in find_cases(inputs) if c.path.resolve() not in ours]
    if not cases:
        raise MedsuiteError(out_dir, "the inputs hold only masks written by segment", "give the image files or folders")
    segmenter = Segmenter(checkpoint, device=device)
    algorithm = algorithm_for(segmenter.config.model.name, segmenter.path)
    examples: list[torch.Tensor] = []  # the first case's middle slice: spiking models' energy depends on real data

    def process(case: Case) -> dict[str, Any]:
        vol = read_3d(case.path, frame=frame)
        labels = segmenter(vol)
        if not examples:
            examples.append(segmenter.network_input(vol))
        outputs = write_mask_outputs(labels, vol, out_dir, f"{case.name}_seg", formats=output_formats, labels=LABELS, algorithm=algorithm, inputs=[case.path])
        volumes = {row["name"]: row["volume_ml"] for row in label_volumes_ml(labels, vol.voxel_volume_ml, LABELS)}
        return {"output": outputs["nifti"], "outputs": outputs, "model": segmenter.name, "shape": list(labels.shape), "label_volumes_ml": volumes}

    parameters = {"model": str(segmenter.path), "frame": frame, "output_formats": [f.value for f in resolve_formats(output_formats)], "device": device, "image_size": list(segmenter.config.data.image_size)}
    code = run_batch(cases, out_dir, process, outputs_of=lambda c: [out_dir / n for n in output_names(f"{c.name}_seg", resolve_formats(output_formats)).values()], command="segment", parameters=parameters, resume=resume, quiet=quiet, part=part)
    report_path = out_dir / part.file("report.json")
    report = json.loads(report_path.read_text())
    report["labels"] = {str(k): v for k, v in LABELS.items()}
    report["model"] = {"checkpoint": str(segmenter.path), "name": segmenter.config.model.name, "card": segmenter.card, "parameters": segmenter.parameters}
    if examples:
        report["energy"] = _energy(segmenter, examples[0])
    write_json(report_path, report)
    return code


def _energy(segmenter: Segmenter, example: torch.Tensor) -> dict[str, Any]:
    """Inference energy estimate (45 nm convention) of one network input cut from a real case."""
    from medsuite.backbones.energy import estimate_energy

    estimate = estimate_energy(segmenter.model, example.to(segmenter.device))
    return {k: v for k, v in estimate.items() if k != "per_layer"} | {"per": "one network input cut from the first case (a 2D model's middle slice, a 3D model's central patch)"}
