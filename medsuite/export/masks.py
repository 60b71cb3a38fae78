"""The one call an inference command makes where it writes a mask: NIfTI, then the DICOM formats asked for."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from medsuite.export.algorithm import Algorithm
from medsuite.export.formats import OutputFormat, output_names, resolve_formats
from medsuite.errors import MedsuiteError
from medsuite.io import Volume, ensure_not_input, image_kind, sha256_file, write_nifti


def algorithm_for(name: str, model: str | Path | Sequence[str | Path] | None) -> Algorithm:
    """The model behind a mask, identified by its file's sha256 (what ``sha256sum`` prints): a bundle folder by
    its weights file; an ensemble by the sha256 of its members' sha256s, in order."""
    if model is None:
        return Algorithm(name=name, model_file="none", model_sha256="none")
    members = [Path(m) for m in ([model] if isinstance(model, (str, Path)) else model)]
    digests = [sha256_file(m / "models" / "model.pt" if m.is_dir() else m) for m in members]
    digest = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
    return Algorithm(name=name, model_file="+".join(m.name for m in members), model_sha256=digest)


def write_mask_outputs(
    mask: np.ndarray,
    source: Volume,
    out_dir: Path,
    stem: str,
    *,
    formats: Sequence[OutputFormat | str] | None,
    labels: dict[int, str],
    algorithm: Algorithm,
    inputs: Iterable[str | Path] = (),
) -> dict[str, str | None]:
    """Write ``mask`` (on ``source``'s grid) as ``<stem>.nii.gz`` and, when asked, ``<stem>.seg.dcm`` and
    ``<stem>.rtstruct.dcm``; returns the file names under report.json's keys (nifti, dicom_seg, rtstruct).
    An empty mask gets its NIfTI only: the DICOM keys are null and ``dicom_note`` says why.

    A DICOM format asked of a non-DICOM input is refused before anything is written.
    """
    chosen = resolve_formats(formats)
    names = output_names(stem, chosen)
    inputs = list(inputs)
    for name in names.values():
        ensure_not_input(out_dir / name, inputs)
    series = None
    if len(chosen) > 1:  # the DICOM writers (highdicom, pydicom) load only when a DICOM format is asked for
        from medsuite.export.dicom_seg import write_dicom_seg
        from medsuite.export.rtstruct import write_rtstruct
        from medsuite.export.source import source_series

        series = source_series(source)
    write_nifti(out_dir / names["nifti"], mask, source.affine, inputs=inputs)
    if series is not None and not mask.any():
        # a SEG needs at least one frame: an empty result is reported, not stored as an empty DICOM object
        return {"nifti": names["nifti"]} | {key: None for key in names if key != "nifti"} | {"dicom_note": "the mask is empty: no DICOM objects written"}
    if OutputFormat.dicom_seg in chosen:
        write_dicom_seg(out_dir / names["dicom_seg"], mask, series, labels, algorithm)
    if OutputFormat.rtstruct in chosen:
        write_rtstruct(out_dir / names["rtstruct"], mask, series, source.affine, labels, algorithm)
    return names


def refuse_dicom_formats_without_dicom(inputs: Iterable[str | Path], formats: Sequence[OutputFormat | str] | None) -> None:
    """A usage error, before any model runs, when DICOM outputs are asked of inputs none of which is DICOM."""
    dicom_formats = [f.value for f in resolve_formats(formats) if f is not OutputFormat.nifti]
    if dicom_formats and not any(Path(p).is_dir() or image_kind(Path(p)) == "dicom" for p in inputs):
        raise MedsuiteError(", ".join(map(str, inputs)), f"{' and '.join(dicom_formats)} need a DICOM series input", "give DICOM series folders or use --output-format nifti")
