"""User-facing errors: one line that names the file, what is wrong, and how to fix it."""

from __future__ import annotations

from pathlib import Path

#: Exit codes shared by every command (see DESIGN.md).
EXIT_OK = 0
EXIT_CASE_FAILED = 1
EXIT_USAGE = 2


class MedsuiteError(Exception):
    """An error the user can cause and fix; the CLI prints it as one line, never a traceback."""

    def __init__(self, source: str | Path | None, problem: str, fix: str, exit_code: int = EXIT_USAGE):
        self.source = str(source) if source is not None else None
        self.problem = problem
        self.fix = fix
        self.exit_code = exit_code
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.problem}; {self.fix}"


def user_error_in(exc: BaseException | None) -> MedsuiteError | None:
    """A MedsuiteError that a library wrapped on its way up (MONAI's Compose re-raises transform errors as
    RuntimeError), so the user still gets its one line rather than "internal error"."""
    for _ in range(20):  # cause chains are short; the bound only guards against a cycle
        if exc is None or isinstance(exc, MedsuiteError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
