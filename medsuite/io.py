"""Image I/O that keeps geometry: NIfTI, DICOM series folders, MHA/NRRD; atomic writes.

Every volume is held as a :class:`Volume`: voxel data indexed (i, j, k[, t]) as NIfTI stores it and a
4x4 affine from voxel index to world millimetres in RAS+ (nibabel's convention). SimpleITK images
(LPS+) are converted at the boundary, so the rest of medsuite only ever sees RAS affines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medsuite.errors import MedsuiteError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
SUPPORTED = "NIfTI (.nii, .nii.gz), MHA/MHD, NRRD, or a DICOM series folder"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass
class Volume:
    """Voxel array plus the voxel-to-world (RAS mm) affine it came with."""

    array: np.ndarray
    affine: np.ndarray
    source: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k (column norms of the affine)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape[:3])

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def with_array(self, array: np.ndarray) -> Volume:
        """The same geometry with other voxel data (a mask, a warped image...)."""
        return Volume(array=array, affine=self.affine.copy(), source=self.source, meta=dict(self.meta))


def image_kind(path: Path) -> str:
    """'nifti', 'itk' or 'dicom' from the path, or raise a one-line error."""
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    if name.endswith(".dcm"):
        return "dicom"
    raise MedsuiteError(path, "not a supported image format", f"give {SUPPORTED}")


def read_image(path: str | Path) -> Volume:
    """Read any supported image with its geometry; errors name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise MedsuiteError(path, "no such file or folder", "check the path")
    kind = image_kind(path)
    if kind == "nifti":
        vol = _read_nifti(path)
    elif kind == "itk":
        vol = _read_itk_file(path)
    else:
        vol = read_dicom_series(path if path.is_dir() else path.parent)
    vol.source = path
    return vol


def _read_nifti(path: Path) -> Volume:
    try:
        img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise MedsuiteError(path, f"cannot read as NIfTI ({type(exc).__name__})", "the file is damaged or not NIfTI; re-export it") from exc
    return Volume(array=np.asarray(array), affine=np.asarray(img.affine, dtype=np.float64))


def _read_itk_file(path: Path) -> Volume:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise MedsuiteError(path, "cannot read as MHA/NRRD", "the file is damaged or not an ITK image; re-export it") from exc
    return from_sitk(image)


def read_dicom_series(folder: Path) -> Volume:
    """One DICOM series from a folder, slices sorted by position along the slice normal.

    A folder that holds several series is refused with their list, since guessing would silently
    pick the wrong scan.
    """
    folder = Path(folder)
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise MedsuiteError(folder, "no DICOM series found in this folder", f"give {SUPPORTED}")
    if len(series_ids) > 1:
        described = "; ".join(_describe_series(folder, sid) for sid in series_ids)
        raise MedsuiteError(folder, f"holds {len(series_ids)} DICOM series ({described})", "give the folder of one series")
    files = reader.GetGDCMSeriesFileNames(str(folder), series_ids[0])  # GDCM sorts by position
    from medsuite.dicom_cine import cine_phases

    cine = cine_phases(list(files), folder)
    phases = cine[0] if cine else [files]
    try:
        images = [_read_series_files(reader, phase) for phase in phases]
    except RuntimeError as exc:
        raise MedsuiteError(folder, "cannot read the DICOM series", "check that every file of the series is complete") from exc
    vol = from_sitk(images[0])
    if cine:  # phases on a 4th axis; require_3d(frame=N) picks one
        vol.array = np.stack([vol.array] + [from_sitk(image).array for image in images[1:]], axis=-1)
        vol.meta.update(dicom_phase_files=[[str(f) for f in p] for p in phases], trigger_times_ms=cine[1])
    vol.meta["dicom_files"] = [str(f) for f in files]
    return vol


def _read_series_files(reader: sitk.ImageSeriesReader, files: list[str]) -> sitk.Image:
    reader.SetFileNames(files)
    return reader.Execute()


def _describe_series(folder: Path, series_id: str) -> str:
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    reader.ReadImageInformation()
    description = reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else "no description"
    return f"{description}: {len(files)} files"


def from_sitk(image: sitk.Image) -> Volume:
    """SimpleITK (LPS, array z,y,x) to Volume (RAS affine, array i,j,k)."""
    array = sitk.GetArrayFromImage(image)
    spatial = image.GetDimension()
    array = np.transpose(array, tuple(reversed(range(spatial))) + tuple(range(spatial, array.ndim)))
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(spatial, spatial)
    affine = np.eye(4)
    affine[:spatial, :spatial] = direction @ np.diag(image.GetSpacing())
    affine[:spatial, 3] = image.GetOrigin()
    return Volume(array=array, affine=LPS_TO_RAS @ affine)


def to_sitk(vol: Volume, array: np.ndarray | None = None) -> sitk.Image:
    """Volume to a 3D SimpleITK image (vector images keep their last axis as components)."""
    data = vol.array if array is None else array
    is_vector = data.ndim == 4
    image = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0, 3) if is_vector else (2, 1, 0)), isVector=is_vector)
    lps = LPS_TO_RAS @ vol.affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return image


# ---------------------------------------------------------------------------------------------
# Checks a pipeline asks of its inputs


def require_3d(vol: Volume, *, frame: int | None = None) -> Volume:
    """A 3D scalar volume: trailing singleton axes dropped, a 4D frame chosen only when asked."""
    array = vol.array
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 4 and frame is not None:
        if not 0 <= frame < array.shape[3]:
            raise MedsuiteError(vol.source, f"frame {frame} is outside 0..{array.shape[3] - 1}", "choose an existing frame")
        array = array[..., frame]
        vol = Volume(array=vol.array, affine=vol.affine, source=vol.source, meta={**vol.meta, "frame": frame})
    if array.ndim == 4:
        raise MedsuiteError(vol.source, f"is 4D {array.shape} (a time series?)", "choose a frame with --frame N or give a 3D image")
    if array.ndim < 3 or min(array.shape) < 2:
        raise MedsuiteError(vol.source, f"is not a 3D volume (shape {array.shape})", "give a 3D image")
    return Volume(array=array, affine=vol.affine, source=vol.source, meta=vol.meta)


def require_finite_content(vol: Volume) -> Volume:
    """Refuse NaN/inf voxels and images with no content at all."""
    if not np.issubdtype(vol.array.dtype, np.number):
        raise MedsuiteError(vol.source, f"has non-numeric voxels ({vol.array.dtype})", "give a scalar image")
    if not np.all(np.isfinite(vol.array)):
        raise MedsuiteError(vol.source, "contains NaN or infinite voxels", "fix or mask them before running")
    if float(np.ptp(vol.array)) == 0.0:
        raise MedsuiteError(vol.source, "is empty (every voxel has the same value)", "give an image with content")
    if not np.all(np.isfinite(vol.affine)) or abs(np.linalg.det(vol.affine[:3, :3])) < 1e-9:
        raise MedsuiteError(vol.source, "has a degenerate affine", "repair the header's voxel-to-world transform")
    return vol


def require_finite(array: Any, target: str | Path | None, what: str = "output") -> None:
    """An output (or a model's result) with NaN/inf values is a failure of the run, not a result."""
    values = np.asarray(array)
    if np.issubdtype(values.dtype, np.inexact) and not np.all(np.isfinite(values)):
        raise MedsuiteError(target, f"the {what} holds NaN or infinite values ({int((~np.isfinite(values)).sum())} of {values.size}); nothing was written", "check the input for NaN/inf or extreme values, and the model", exit_code=1)


def read_3d(path: str | Path, *, frame: int | None = None) -> Volume:
    """Read, then insist on a finite, non-empty 3D volume: the usual input of a pipeline."""
    return require_finite_content(require_3d(read_image(path), frame=frame))


# ---------------------------------------------------------------------------------------------
# Writing: atomic, never over an input


def ensure_not_input(target: Path, inputs: Iterable[str | Path]) -> None:
    resolved = Path(target).resolve()
    for item in inputs:
        if Path(item).resolve() == resolved:
            raise MedsuiteError(target, "would overwrite an input", "choose another output folder with -o")


def check_output_dir(folder: str | Path, expected_bytes: int = 0) -> Path:
    """Before any compute: ``folder`` must be a folder (or creatable), writable, with room for
    ``expected_bytes`` (plus a margin), so a long run never fails at its very end."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MedsuiteError(folder, "exists and is a file, not a folder", "give a folder path to -o")
    existing = next(p for p in (folder, *folder.resolve().parents) if p.exists())
    if not existing.is_dir():
        raise MedsuiteError(folder, f"cannot be created: {existing} is a file", "give a folder path to -o")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MedsuiteError(folder, f"is not writable ({existing} is read-only for this user)", "choose a writable output folder with -o")
    free = shutil.disk_usage(existing).free
    needed = int(expected_bytes * 1.1) + (16 << 20)
    if free < needed:
        raise MedsuiteError(folder, f"has {free >> 20} MB free, the outputs need about {needed >> 20} MB", "free disk space or choose another output folder with -o")
    return folder


def _temp_prefix(target: Path) -> str:
    return f".{target.name.split('.')[0]}-"


def orphaned_temp_files(targets: Iterable[Path]) -> list[Path]:
    """Temp files :func:`atomic_path` left beside ``targets`` when a run was killed before its rename."""
    found = []
    for target in map(Path, targets):
        if target.parent.is_dir():
            suffix = re.escape("".join(target.suffixes) or ".tmp")
            pattern = re.compile(re.escape(_temp_prefix(target)) + r"[a-z0-9_]{8}" + suffix + "$")  # mkstemp's names
            found += [p for p in target.parent.iterdir() if p.is_file() and pattern.match(p.name)]
    return sorted(set(found))
def ensure_output_outside_inputs(out_dir: Path, inputs: Iterable[str | Path]) -> None:
    """A results folder may not be an input folder or lie inside one (its files would mix with the inputs')."""
    resolved = Path(out_dir).resolve()
    for item in map(Path, inputs):
        source = item.resolve()
        if resolved == source or (source.is_dir() and resolved.is_relative_to(source)):
            raise MedsuiteError(out_dir, f"is inside the input folder {item}", "choose an output folder outside the inputs with -o")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it into place only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_nifti(
    target: str | Path,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    inputs: Iterable[str | Path] = (),
    intent: str | None = None,
    compresslevel: int | None = None,
) -> Path:
    """Write a NIfTI atomically with the given affine as both sform and qform (scanner frame).

    ``compresslevel``: gzip level of a ``.nii.gz`` (None: nibabel's default, 1; 0 stores without compressing)."""
    target = Path(target)
    ensure_not_input(target, inputs)
    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    if intent is not None:
        image.header.set_intent(intent)
    with atomic_path(target) as tmp:
        if compresslevel is None or target.suffix != ".gz":
            nib.save(image, str(tmp))
        else:  # nibabel's own deterministic gzip writer (mtime 0), at the level asked for
            with nib.openers.Opener(str(tmp), "wb", compresslevel=compresslevel) as handle:
                image.to_stream(handle)
    return target


def write_json(target: str | Path, payload: Any) -> Path:
    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    return target


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, or of every file of a folder in sorted order (a DICOM series)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
