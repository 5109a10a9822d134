"""The one error family of sklambda.

Every error carries a message that is safe to show a client or write to a job record: field
paths and reasons, never internals. Adapters (HTTP, batch) map the types to their own
vocabulary in one place each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NoteKind = Literal["unseen_category", "outside_training_range"]
UNSEEN_CATEGORY: NoteKind = "unseen_category"
OUTSIDE_TRAINING_RANGE: NoteKind = "outside_training_range"


class SklambdaError(Exception):
    """Base class of every error sklambda raises."""


class ConfigurationError(SklambdaError):
    """A setting is missing or invalid: the function fails its init, naming the variable."""


class ModelLoadError(SklambdaError):
    """The model artifact cannot be used: missing, tampered, or made for other libraries."""


class ManifestError(ModelLoadError):
    """``model.json`` is missing or does not match the manifest schema."""


class IntegrityError(ModelLoadError):
    """An artifact file does not match the SHA-256 recorded in the manifest."""


class VersionMismatchError(ModelLoadError):
    """The artifact was made with a library version other than the running one."""


class RuntimeUnavailableError(ModelLoadError):
    """The requested serving runtime is not part of this artifact."""


@dataclass(frozen=True, slots=True)
class _RowRemark:
    row: int
    field: str | None
    reason: str

    def path(self, prefix: str = "instances") -> str:
        """Render the location as ``instances[3].bill_length_mm``."""
        where = f"{prefix}[{self.row}]"
        return f"{where}.{self.field}" if self.field is not None else where


@dataclass(frozen=True, slots=True)
class FieldError(_RowRemark):
    """One reason one input row was rejected.

    ``row`` is the 0-based position of the row in its request or chunk, ``field`` the feature
    name (``None`` when the row as a whole is wrong), ``reason`` a short, fixed sentence.
    """


@dataclass(frozen=True, slots=True)
class Note(_RowRemark):
    """A remark on a row that was scored: ``kind`` says what about it, ``UNSEEN_CATEGORY`` (a
    category never seen in training) or ``OUTSIDE_TRAINING_RANGE`` (a number below the
    training minimum or above the maximum); ``reason`` says it in a fixed sentence."""

    kind: NoteKind


class InvalidInput(SklambdaError):
    """One or more input rows do not match the model's input schema."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        first = errors[0].path() + ": " + errors[0].reason if errors else "invalid input"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class NotSupportedError(SklambdaError):
    """The model cannot do what was asked (for example probabilities from a regressor)."""


class FileError(SklambdaError):
    """A batch file as a whole cannot be scored (empty, not UTF-8, corrupt gzip, bad header...);
    retrying cannot mend it."""


class OutOfTime(SklambdaError):
    """Too little Lambda time is left to finish the file in this invocation."""

    def __init__(self, row: int, seconds_left: float) -> None:
        super().__init__(
            f"stopped after row {row}: {seconds_left:.0f} s of Lambda time left, too little to "
            "finish the file in this invocation"
        )
        self.row = row
