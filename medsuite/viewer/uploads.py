"""Browser uploads: size caps checked on the header before any voxel is read, a private folder per session.

A 0.5 MB gzip can declare a 1024 x 1024 x 512 volume; reading it would take gigabytes. The header
(NIfTI, MHA/NRRD, or one DICOM file times the number of files) is read first and refused above
``MAX_VOXELS`` or ``MAX_BYTES``. Files go to a 0700 folder of the browser session, written 0600, and
the folder is removed when the session object is collected (Streamlit drops a session's state some
time after its tab closes) or when the server exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from medsuite.errors import MedsuiteError

#: The upload limit handed to Streamlit (``server.maxUploadSize``), in MB.
MAX_UPLOAD_MB = 256
#: Largest volume an upload may declare: 512^3 voxels, and 512^3 float32 in bytes.
MAX_VOXELS = 512**3
MAX_BYTES = MAX_VOXELS * 4


def declared_size(path: Path) -> tuple[tuple[int, ...], int]:
    """(shape, bytes in memory) that a file or DICOM series folder declares, from headers only."""
    import nibabel as nib
    import SimpleITK as sitk

    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(files[0]))
            reader.ReadImageInformation()
            shape = tuple(int(n) for n in reader.GetSize()[:2]) + (len(files),)
            itemsize = np.dtype(sitk.GetArrayViewFromImage(sitk.Image(1, 1, reader.GetPixelID())).dtype).itemsize
        elif path.name.lower().endswith((".nii", ".nii.gz")):
            header = nib.load(str(path)).header
            shape = tuple(int(n) for n in header.get_data_shape())
            itemsize = np.dtype(header.get_data_dtype()).itemsize
        else:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            shape = tuple(int(n) for n in reader.GetSize())
            itemsize = np.dtype(sitk.GetArrayViewFromImage(sitk.Image(1, 1, reader.GetPixelID())).dtype).itemsize * reader.GetNumberOfComponents()
    except Exception as exc:  # nibabel and ITK raise many types for damaged headers
        raise MedsuiteError(path.name, f"has no readable image header ({type(exc).__name__})", "upload a NIfTI file or the files of one DICOM series") from exc
    return shape, int(np.prod(shape, dtype=np.int64)) * itemsize


def check_declared_size(path: Path) -> None:
    """Refuse, before reading any voxel, an upload whose header declares more than the caps."""
    shape, nbytes = declared_size(path)
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS or nbytes > MAX_BYTES:
        raise MedsuiteError(
            path.name,
            f"declares {' x '.join(map(str, shape))} voxels ({nbytes / 2**20:,.0f} MB in memory)",
            f"the station opens uploads up to {MAX_VOXELS:,} voxels and {MAX_BYTES // 2**20} MB; crop or downsample it, or run `medsuite view` on its folder",
        )


class SessionUploads:
    """A private folder for one browser session's uploads, removed with the session."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="medsuite-upload-"))  # mode 0700
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def write(self, relative: str, data: bytes) -> Path:
        """Write ``data`` to ``folder/relative`` as a 0600 file (never follows or replaces a file)."""
        target = self.folder / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return target

    def remove(self) -> None:
        self._cleanup()
