"""The training-loop guard: a loss that is NaN or infinite stops the run at once, naming where.

A NaN loss never recovers; every step after it writes NaN weights over good ones. Stopping at the first
such step keeps the last checkpoint the run saved before it (checkpoints are only ever replaced atomically).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from medsuite.errors import EXIT_CASE_FAILED, MedsuiteError


def require_finite_loss(loss: float, *, step: int, cases: Iterable[str] = (), run: str | Path | None = None, kept: str | Path | None = None) -> None:
    """Raise (exit 1) if ``loss`` is not finite; ``cases`` are the batch's case ids, ``kept`` the last good checkpoint."""
    if math.isfinite(loss):
        return
    names = sorted({str(c) for c in cases})
    batch = f" on the batch of {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}" if names else ""
    keep = f"; the last good checkpoint is {kept}" if kept and Path(kept).exists() else "; no checkpoint was saved"
    raise MedsuiteError(run, f"training loss became {loss} at step {step}{batch}{keep}", "check those cases for NaN/inf or extreme values, or lower the learning rate", exit_code=EXIT_CASE_FAILED)
