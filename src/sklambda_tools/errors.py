"""Errors of the tools, in sklambda's one error family."""

from __future__ import annotations

from sklambda.errors import SklambdaError


class PackagingError(SklambdaError):
    """The pipeline or its data cannot be packaged."""


class GateFailed(PackagingError):
    """A holdout metric missed its threshold; the artifact was not written."""
