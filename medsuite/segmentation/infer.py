"""Inference: load the model(s) once, segment volumes in their own geometry, and the batch ``segment`` job
(NIfTI files / DICOM series folders in; ``<case>_seg.nii.gz``, optional ``<case>_probabilities.nii.gz``,
report.json with per-case uncertainty, QC flag and per-patient cardiac function, cardiac_function.csv out)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import ResizeWithPadOrCrop

from medsuite.batch import Case, find_cases, read_manifest, run_batch
from medsuite.data.transforms import normalise_intensity
from medsuite.errors import MedsuiteError
from medsuite.io import Volume, read_3d, write_json, write_nifti
from medsuite.segmentation import cardiac
from medsuite.segmentation.data import resize_images
from medsuite.segmentation.metrics import class_volumes_ml
from medsuite.segmentation.models import (
    count_parameters,
    load_ensemble,
    resolve_checkpoints,
)
from medsuite.segmentation.predict import (
    Prediction,
    mirror_axes,
    trained_with_mirrors,
)
from medsuite.segmentation.orientation import predict_oriented
from medsuite.segmentation.uncertainty import SHIPPED_QC_ENTROPY, case_uncertainty
from medsuite.sharding import WHOLE, Part

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "segmentation"
DEFAULT_CHECKPOINT = ASSETS / "neunet_acdc.pt"
# where `docs/segmentation.md`'s assembly step puts a trained fold ensemble; it becomes the default when present
DEFAULT_ENSEMBLE = ASSETS / "neunet_acdc_folds"


def default_models() -> list[Path]:
    return resolve_checkpoints([DEFAULT_ENSEMBLE]) if DEFAULT_ENSEMBLE.is_dir() else [DEFAULT_CHECKPOINT]


def stack_axis(vol: Volume) -> int:
    """The axis the 2D model slices along: the coarsest spacing (short-axis slice thickness), last on ties."""
    spacing = np.round(vol.spacing, 3)
    return int(max(range(3), key=lambda a: (spacing[a], a)))


class Segmenter:
    """Trained model(s) loaded once; ``segmenter(volume)`` gives the prediction on the input grid (with
    ``orientation_search``, in the in-plane orientation the search chooses; mirroring TTA and the members' probabilities averaged)."""

    def __init__(self, checkpoints: Sequence[str | Path] | str | Path | None = None, device: str | torch.device = "cpu", *, tta: bool = True, orientation_search: bool = False):
        if isinstance(checkpoints, (str, Path)):
            checkpoints = [checkpoints]
        self.paths = resolve_checkpoints(checkpoints) if checkpoints else default_models()
        self.ensemble = load_ensemble(self.paths, device)
        first = self.ensemble[0]
        self.config, self.card, self.labels, self.model = first.config, first.card, first.labels, first.model
        self.members = [(m.model, m.config) for m in self.ensemble]
        self.intensity = first.intensity  # the members share it (load_ensemble checks)
        self.device = torch.device(device)
        self.tta = tta
        self.orientation_search = orientation_search
        names = ", ".join(p.name for p in self.paths)
        self.name = f"{self.config.model.name} ({names}, card {self.card})" if len(self.paths) == 1 else f"{len(self.paths)}-model ensemble of {self.config.model.name} ({names})"
        self.parameters = sum(count_parameters(m.model) for m in self.ensemble)
        stored = first.checkpoint.get("qc_entropy")
        self.qc_entropy, self.qc_source = (float(stored), f"stored in {first.path.name}") if stored is not None else (SHIPPED_QC_ENTROPY, "measured for the shipped neunet_acdc.pt with TTA on the acdc_h5 validation patients")

    def __call__(self, vol: Volume) -> tuple[Prediction, dict[str, object]]:
        """The prediction and the in-plane orientation it was made in (medsuite.segmentation.orientation)."""
        return predict_oriented(self.members, self._normalised(vol), slice_axis=stack_axis(vol), tta=self.tta, search=self.orientation_search)

    def _normalised(self, vol: Volume) -> torch.Tensor:
        return normalise_intensity(torch.as_tensor(np.asarray(vol.array, dtype=np.float32)), self.intensity)

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




def probabilities_of(out_dir: Path, case: Case) -> Path:
    return out_dir / f"{case.name}_probabilities.nii.gz"


def segment_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    checkpoint: Sequence[str | Path] | str | Path | None = None,
    frame: int | None = None,
    resume: bool = False,
    device: str = "cpu",
    quiet: bool = False,
    tta: bool = True,
    orientation_search: bool = False,
    save_probabilities: bool = False,
    qc_entropy: float | None = None,
    pairs: str | Path | None = None,
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
    cases = [c for c in find_cases(inputs) if c.path.resolve() not in ours and not (c.name.endswith(("_seg", "_probabilities")) and c.path.parent.resolve() == out_dir.resolve())]
    if not cases:
        raise MedsuiteError(out_dir, "the inputs hold only masks written by segment", "give the image files or folders")
    given_pairs = cardiac.read_pairs_csv(pairs) if pairs else None
    segmenter = Segmenter(checkpoint, device=device, tta=tta, orientation_search=orientation_search)
    algorithm = algorithm_for(segmenter.config.model.name, segmenter.paths)
    threshold = segmenter.qc_entropy if qc_entropy is None else qc_entropy
    qc = {"measure": "mean normalised predictive entropy inside the predicted heart (0..1)", "threshold": threshold, "source": segmenter.qc_source if qc_entropy is None else "--qc-entropy"}
    examples: list[torch.Tensor] = []  # the first case's middle slice: spiking models' energy depends on real data

    def outputs(case: Case) -> list[Path]:
        masks = [out_dir / name for name in output_names(f"{case.name}_seg", resolve_formats(output_formats)).values()]
        return masks + ([probabilities_of(out_dir, case)] if save_probabilities else [])

    def process(case: Case) -> dict[str, Any]:
        vol = read_3d(case.path, frame=frame)
        prediction, orientation = segmenter(vol)
        labels = prediction.labels.numpy().astype(np.uint8)
        if not examples:
            examples.append(segmenter.network_input(vol))
        written = write_mask_outputs(labels, vol, out_dir, f"{case.name}_seg", formats=output_formats, labels=segmenter.labels, algorithm=algorithm, inputs=[case.path])
        entry = {"output": written["nifti"], "outputs": written, "model": segmenter.name, "shape": list(labels.shape), "label_volumes_ml": class_volumes_ml(labels, vol.voxel_volume_ml, segmenter.labels), "orientation": orientation}
        if save_probabilities:
            # (x, y, z, 1, class) float32 on the input's grid and affine: NIfTI's vector layout (intent VECTOR,
            # components on the 5th axis), which ITK/SimpleITK read as a 3D image with one component per class
            probabilities = np.ascontiguousarray(prediction.probabilities.movedim(0, -1)[:, :, :, None].numpy(), dtype=np.float32)
            entry["probabilities"] = write_nifti(probabilities_of(out_dir, case), probabilities, vol.affine, inputs=[case.path], intent="vector").name
        return entry | {"uncertainty": case_uncertainty(prediction, threshold)}

    formats = resolve_formats(output_formats)
    parameters = {"models": [str(p) for p in segmenter.paths], "frame": frame, "output_formats": [f.value for f in formats], "device": device, "tta": tta, "orientation_search": orientation_search, "save_probabilities": save_probabilities, "pairs": str(pairs) if pairs else None}
    extra = {
        "labels": {str(k): v for k, v in segmenter.labels.items()},
        "model": {"checkpoints": [str(p) for p in segmenter.paths], "name": segmenter.config.model.name, "card": segmenter.card, "parameters": segmenter.parameters, "tta": tta, "mirrored_members": sum(trained_with_mirrors(c) for _, c in segmenter.members)},
        "qc": qc,
    }
    code = run_batch(cases, out_dir, process, outputs_of=outputs, command="segment", parameters=parameters, resume=resume, quiet=quiet, report_extra=extra, part=part)
    report_path = out_dir / part.file("report.json")
    report = json.loads(report_path.read_text())
    if examples:
        report["energy"] = _energy(segmenter, examples[0])
    report["cardiac_function"] = cardiac_function(report["cases"], {c.name: c.path for c in part.select(cases)}, list(segmenter.labels.values()), given_pairs)
    if report["cardiac_function"]["patients"]:
        cardiac.write_function_csv(out_dir / part.file("cardiac_function.csv"), report["cardiac_function"]["patients"])
    write_json(report_path, report)
    return code


def cardiac_function(cases: dict[str, dict[str, Any]], paths: dict[str, Path], class_names: list[str], pairs=None) -> dict[str, Any]:
    """report.json's ``cardiac_function``: the ACDC indices of every patient whose ED and ES cases both
    have masks (schema in docs/segmentation.md)."""
    head = {"definition": "ACDC challenge (Bernard et al. 2018): cavity volumes at ED/ES from the image spacing, EF = (EDV - ESV) / EDV, SV = EDV - ESV, LV mass = 1.05 g/ml x myocardium volume at ED", "units": cardiac.UNITS}
    missing = cardiac.missing_classes(class_names)
    if missing:
        return head | {"patients": {}, "note": f"the model's label_map has no {', '.join(missing)}"}
    measured = {name: paths.get(name) for name, entry in cases.items() if "label_volumes_ml" in entry}
    patients = {}
    for patient, pair in sorted(cardiac.pair_phases(measured, pairs).items()):
        indices = cardiac.cardiac_indices(cases[pair["ed"]]["label_volumes_ml"], cases[pair["es"]]["label_volumes_ml"])
        flagged = any(cases[pair[p]].get("uncertainty", {}).get("qc_flag", False) for p in ("ed", "es"))
        patients[patient] = {"ed": pair["ed"], "es": pair["es"], "pairing": pair["source"], "indices": indices, "qc_flag": flagged}
    return head | {"patients": patients}


def _energy(segmenter: Segmenter, example: torch.Tensor) -> dict[str, Any]:
    """Inference energy estimate (45 nm convention) of one network input cut from a real case, for one member
    and one mirror (an ensemble with TTA multiplies it by members x mirrors)."""
    from medsuite.backbones.energy import estimate_energy

    estimate = estimate_energy(segmenter.model, example.to(segmenter.device))
    passes = sum(len(mirror_axes(2, segmenter.tta and trained_with_mirrors(config))) for _, config in segmenter.members)
    return {k: v for k, v in estimate.items() if k != "per_layer"} | {"per": "one network input cut from the first case (a 2D model's middle slice, a 3D model's central patch), one member, one mirror", "passes_per_input": passes}
