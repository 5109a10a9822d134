"""Holdout metrics, the validation gate, the champion gate and known faults (packaging time;
needs scikit-learn).

The gate file (``gate.toml``) has two tables::

    # Thresholds the candidate's holdout metrics must meet; the first one is the primary metric.
    [thresholds]
    accuracy = { min = 0.95 }
    log_loss = { max = 0.20 }

    # Optional: how the candidate must compare with the champion (the model it replaces), both
    # scored on the candidate's holdout.
    [champion]
    metrics = ["accuracy", "log_loss"]  # default: the primary metric
    tolerance = 0.01                    # how much worse it may be; default 0: not worse at all
    # or one tolerance per metric (a compared metric not named here gets 0):
    # tolerance = { accuracy = 0.01, log_loss = 0.02 }

Without a gate file the thresholds are ``default_gate``'s and the champion gate compares its
first metric with no tolerance. Whether higher or lower is better is each metric's own
(``BETTER``), and a tie passes.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from sklambda.manifest import (
    Better,
    ChampionCheck,
    Fault,
    Feature,
    Gate,
    GateCheck,
    HoldoutMetrics,
)
from sklambda_tools.errors import GateFailed, PackagingError

CLASSIFICATION_METRICS = (
    "accuracy",
    "macro_f1",
    "min_class_recall",
    "log_loss",
    "roc_auc",
    "average_precision",
)
PROBABILITY_METRICS = ("log_loss", "roc_auc", "average_precision")
RANKING_METRICS = ("roc_auc", "average_precision")
"""Computed from the probabilities one class against the rest: they need every class in the
holdout (a class without rows has no ranking to score)."""
REGRESSION_METRICS = ("mae", "rmse", "r2")
Op = Literal["min", "max"]
Thresholds = dict[str, tuple[Op, float]]
BETTER: dict[str, Better] = {
    "accuracy": "higher",
    "macro_f1": "higher",
    "min_class_recall": "higher",
    "log_loss": "lower",
    "roc_auc": "higher",
    "average_precision": "higher",
    "mae": "lower",
    "rmse": "lower",
    "r2": "higher",
}
"""Which way each metric is better, for the champion gate."""
CLASS_SET_METRICS = ("macro_f1", "min_class_recall", "log_loss", "roc_auc", "average_precision")
"""Metrics that average over, or need, the model's own classes: two models with other class
sets do not measure the same thing with them (accuracy they do)."""
GATE_TABLES = ("thresholds", "champion")


@dataclass(frozen=True)
class ChampionRule:
    """The gate file's ``[champion]`` table: the metrics compared (``None``: the primary one)
    and how much worse than the champion the candidate may be in each."""

    metrics: tuple[str, ...] | None = None
    tolerance: float = 0.0
    """For every compared metric not in ``tolerances``."""
    tolerances: Mapping[str, float] = field(default_factory=dict)

    def compared(self, primary: str) -> tuple[str, ...]:
        return self.metrics if self.metrics is not None else (primary,)

    def tolerance_for(self, metric: str) -> float:
        return self.tolerances.get(metric, self.tolerance)


def holdout_metrics(
    task: str,
    y_true: np.ndarray,
    predicted: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any] | None,
    split: str = "test",
) -> HoldoutMetrics:
    """Metrics of one holdout split: accuracy, macro F1, per-class recall and log loss for
    classifiers, and ROC AUC and average precision (log loss, ROC AUC and average precision
    only with probabilities, the last two only when every class has holdout rows; see
    ``unavailable_metrics``); MAE, RMSE and R² for regressors.

    ROC AUC and average precision rank the rows by the probability of one class: for a binary
    classifier the positive class is ``classes[1]`` (scikit-learn's order, the second column of
    ``predict_proba``); for more classes each class against the rest, averaged (macro)."""
    if task == "regression":
        y = np.asarray(y_true, dtype=np.float64)
        p = np.asarray(predicted, dtype=np.float64)
        values = {
            "mae": float(skm.mean_absolute_error(y, p)),
            "rmse": float(math.sqrt(skm.mean_squared_error(y, p))),
            "r2": float(skm.r2_score(y, p)),
        }
        return HoldoutMetrics(split=split, rows=len(y), values=_rounded(values))
    labels = list(classes or [])
    recall = skm.recall_score(y_true, predicted, labels=labels, average=None, zero_division=0)
    per_class = {str(c): float(r) for c, r in zip(labels, recall, strict=True)}
    values = {
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "macro_f1": float(
            skm.f1_score(y_true, predicted, labels=labels, average="macro", zero_division=0)
        ),
        "min_class_recall": min(per_class.values()),
    }
    if proba is not None:
        values["log_loss"] = float(skm.log_loss(y_true, proba, labels=labels))
        if _ranking_blocker(y_true, labels) is None:
            values.update(_ranking(y_true, np.asarray(proba, dtype=np.float64), labels))
    return HoldoutMetrics(
        split=split, rows=len(y_true), values=_rounded(values), per_class_recall=_rounded(per_class)
    )


def _ranking(y_true: np.ndarray, proba: np.ndarray, labels: list[Any]) -> dict[str, float]:
    """ROC AUC and average precision, binary (``labels[1]`` positive) or one-vs-rest macro."""
    truth = [_as_label(v) for v in np.asarray(y_true).tolist()]
    indicator = np.asarray([[v == c for c in labels] for v in truth], dtype=np.int64)
    if len(labels) == 2:
        y, score = indicator[:, 1], proba[:, 1]
        return {
            "roc_auc": float(skm.roc_auc_score(y, score)),
            "average_precision": float(skm.average_precision_score(y, score)),
        }
    return {
        "roc_auc": float(skm.roc_auc_score(indicator, proba, average="macro")),
        "average_precision": float(skm.average_precision_score(indicator, proba, average="macro")),
    }


def _as_label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _ranking_blocker(y_true: np.ndarray, labels: Sequence[Any]) -> str | None:
    """Why ROC AUC and average precision cannot be computed on this holdout, or ``None``."""
    if len(labels) < 2:
        return "needs at least two classes"
    present = {_as_label(v) for v in np.asarray(y_true).tolist()}
    absent = [c for c in labels if c not in present]
    if absent:
        return "needs every class in the holdout, and it has no rows of " + ", ".join(
            repr(c) for c in absent
        )
    return None


def unavailable_metrics(
    task: str, y_true: np.ndarray, proba: np.ndarray | None, classes: Sequence[Any] | None
) -> dict[str, str]:
    """The classification metrics ``holdout_metrics`` leaves out, each with the reason:
    ``{"roc_auc": "roc_auc needs predict_proba", ...}``."""
    if task != "classification":
        return {}
    if proba is None:
        return {m: f"{m} needs predict_proba" for m in PROBABILITY_METRICS}
    blocker = _ranking_blocker(y_true, list(classes or []))
    if blocker is None:
        return {}
    return {m: f"{m} {blocker}" for m in RANKING_METRICS}


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in values.items()}


def _gate_file(path: str | Path) -> dict[str, Any]:
    try:
        config = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PackagingError(f"cannot read the gate file {path}: {exc}") from exc
    for key in config:
        if key not in GATE_TABLES:
            raise PackagingError(
                f"gate {path}: unknown table [{key}]; a gate file has [thresholds] and, "
                "optionally, [champion]"
            )
    _champion_rule(config.get("champion"), path)  # a mistake there is refused whoever reads
    return config


def read_gate(path: str | Path) -> Thresholds:
    """Read a gate file's thresholds: a TOML table ``[thresholds]`` of ``metric = { min = x }``
    (or max), the primary metric first (the module's docstring shows the whole format)."""
    config = _gate_file(path)
    table = config.get("thresholds")
    if not isinstance(table, dict) or not table:
        raise PackagingError(f"the gate file {path} needs a non-empty [thresholds] table")
    out: Thresholds = {}
    for metric, rule in table.items():
        if not isinstance(rule, dict) or len(rule) != 1 or not set(rule) <= {"min", "max"}:
            raise PackagingError(
                f"gate {path}: {metric} must be {{ min = <number> }} or {{ max = <number> }}"
            )
        ((op, threshold),) = rule.items()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise PackagingError(f"gate {path}: {metric}.{op} must be a number")
        out[metric] = (op, float(threshold))
    return out


def read_champion(path: str | Path) -> ChampionRule:
    """Read a gate file's ``[champion]`` table (the module's docstring shows it); a file
    without one gives the default rule: the primary metric, no tolerance."""
    return _champion_rule(_gate_file(path).get("champion"), path)


def _tolerance(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PackagingError(f"{where} must be a number (0 or more)")
    if not math.isfinite(value) or value < 0:
        raise PackagingError(f"{where} must be a number of 0 or more, not {value}")
    return float(value)


def _champion_rule(table: Any, path: str | Path) -> ChampionRule:
    if table is None:
        return ChampionRule()
    where = f"gate {path}: [champion]"
    if not isinstance(table, dict):
        raise PackagingError(f"{where} must be a table")
    for key in table:
        if key not in ("metrics", "tolerance"):
            raise PackagingError(f"{where} has an unknown key {key!r}; it takes metrics, tolerance")
    metrics: tuple[str, ...] | None = None
    if "metrics" in table:
        given = table["metrics"]
        if not isinstance(given, list) or not given or not all(isinstance(m, str) for m in given):
            raise PackagingError(f"{where} metrics must be a non-empty list of metric names")
        for metric in given:
            if metric not in BETTER:
                raise PackagingError(
                    f"{where} metrics: unknown metric {metric!r}; known: {', '.join(BETTER)}"
                )
        if len(set(given)) != len(given):
            raise PackagingError(f"{where} metrics names a metric twice")
        metrics = tuple(given)
    tolerance, tolerances = 0.0, {}
    given = table.get("tolerance", 0.0)
    if isinstance(given, dict):
        for metric, value in given.items():
            if metric not in BETTER:
                raise PackagingError(
                    f"{where} tolerance: unknown metric {metric!r}; known: {', '.join(BETTER)}"
                )
            tolerances[metric] = _tolerance(value, f"{where} tolerance.{metric}")
    else:
        tolerance = _tolerance(given, f"{where} tolerance")
    return ChampionRule(metrics=metrics, tolerance=tolerance, tolerances=tolerances)


def figure(value: float) -> str:
    """A metric as recorded (six decimals at most): ``0.970588``, ``0.95``, ``12.5``."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def check_champion(
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    rule: ChampionRule,
    primary: str,
    *,
    task: str,
    source: str,
    who: str,
    unavailable: Mapping[str, str] | None = None,
    champion_unavailable: Mapping[str, str] | None = None,
    other_classes: str | None = None,
) -> tuple[list[ChampionCheck], dict[str, str]]:
    """Compare the candidate's metrics with the champion's (both on the candidate's holdout):
    the checks, and the metrics asked for that were not compared with the reason.

    A metric the champion does not have (``champion_unavailable`` says why) or that depends on
    the class set when the classes differ (``other_classes`` says how) is not compared; none
    left to compare, a metric unknown for the task or one the candidate does not have
    (``unavailable``) is a ``PackagingError``. A metric worse than the champion's by more than
    its tolerance raises ``GateFailed`` naming it, both values and the tolerance; a tie passes.
    """
    known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    compared = rule.compared(primary)
    for metric in rule.tolerances:
        if metric not in compared:
            raise PackagingError(
                f"gate {source}: [champion] tolerance.{metric}: {metric} is not compared "
                f"(the compared metrics: {', '.join(compared)})"
            )
    checks: list[ChampionCheck] = []
    skipped: dict[str, str] = {}
    for metric in compared:
        if metric not in known:
            raise PackagingError(
                f"gate {source}: [champion] compares {metric!r}, not a {task} metric; "
                f"known: {', '.join(known)}"
            )
        if metric not in candidate:
            why = (unavailable or {}).get(metric, f"{metric} was not computed on this holdout")
            raise PackagingError(
                f"gate {source}: [champion] compares {metric}, which the candidate does not "
                f"have ({why})"
            )
        if other_classes is not None and metric in CLASS_SET_METRICS:
            skipped[metric] = f"{metric} depends on the classes, and {other_classes}"
            continue
        if metric not in champion:
            why = (champion_unavailable or {}).get(metric, f"{metric} was not computed")
            skipped[metric] = f"the champion has no {metric} ({why})"
            continue
        better = BETTER[metric]
        tolerance = rule.tolerance_for(metric)
        ours, theirs = candidate[metric], champion[metric]
        # Both are rounded to six decimals: rounding the difference keeps a float's last bit
        # from turning a tie, or a difference equal to the tolerance, into a refusal.
        worse_by = round(theirs - ours if better == "higher" else ours - theirs, 9)
        checks.append(
            ChampionCheck(
                metric=metric,
                candidate=ours,
                champion=theirs,
                better=better,
                tolerance=tolerance,
                passed=worse_by <= tolerance,
            )
        )
    if not checks:
        reasons = "; ".join(f"{m}: {why}" for m, why in skipped.items())
        raise PackagingError(
            f"gate {source}: no metric of the champion gate can be compared with the champion "
            f"{who} ({reasons}); name one both models have in [champion] metrics (accuracy "
            "always is), or package with --no-champion"
        )
    failed = [c for c in checks if not c.passed]
    if failed:
        reasons = "; ".join(
            f"{c.metric}: the candidate's {figure(c.candidate)} is worse than the champion's "
            f"{figure(c.champion)} by more than the tolerance {c.tolerance:g} "
            f"({c.better} is better)"
            for c in failed
        )
        raise GateFailed(
            f"champion gate failed ({source}; champion {who}): {reasons}; nothing was written"
        )
    return checks, skipped


def default_gate(task: str, y_true: np.ndarray) -> Thresholds:
    """No worse than the trivial model: the majority class, or the mean (R² of 0)."""
    if task == "regression":
        return {"r2": ("min", 0.0)}
    _, counts = np.unique(np.asarray(y_true).astype(str), return_counts=True)
    return {"accuracy": ("min", round(float(counts.max() / counts.sum()), 6))}


def check_gate(
    metrics: HoldoutMetrics,
    thresholds: Thresholds,
    source: str,
    task: str,
    unavailable: Mapping[str, str] | None = None,
) -> Gate:
    """Compare metrics with thresholds. Raises ``GateFailed`` naming every miss, and
    ``PackagingError`` for a metric that is unknown or was not computed (``unavailable`` gives
    the reason, as ``unavailable_metrics`` says it)."""
    known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    checks: list[GateCheck] = []
    for metric, (op, threshold) in thresholds.items():
        if metric not in known:
            raise PackagingError(
                f"gate {source}: unknown metric {metric!r} for {task}; known: {', '.join(known)}"
            )
        if metric not in metrics.values:
            why = (unavailable or {}).get(metric)
            if why is None:
                why = (
                    f"{metric} needs predict_proba"
                    if metric in PROBABILITY_METRICS and "log_loss" not in metrics.values
                    else f"{metric} was not computed on this holdout"
                )
            raise PackagingError(f"gate {source}: {metric} cannot be computed here ({why})")
        value = metrics.values[metric]
        passed = value >= threshold if op == "min" else value <= threshold
        checks.append(
            GateCheck(metric=metric, value=value, op=op, threshold=threshold, passed=passed)
        )
    failed = [c for c in checks if not c.passed]
    if failed:
        words = {"min": "below the minimum", "max": "above the maximum"}
        reasons = "; ".join(
            f"{c.metric} = {c.value:.4f} is {words[c.op]} {c.threshold:.4f}" for c in failed
        )
        raise GateFailed(f"validation gate failed ({source}): {reasons}")
    return Gate(source=source, checks=checks, passed=True)


def known_faults(
    task: str,
    features: Sequence[Feature],
    X: pd.DataFrame,
    y_true: np.ndarray,
    predicted: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any] | None,
    *,
    min_rows: int = 5,
    top: int = 5,
) -> list[Fault]:
    """The holdout slices (a category, a missing value, a quartile of a number) where the
    per-row loss is highest, worst first; only slices worse than the whole holdout."""
    y = np.asarray(y_true)
    correct = None
    if task == "regression":
        metric = "mae"
        loss = np.abs(np.asarray(predicted, dtype=np.float64) - y.astype(np.float64))
    else:
        correct = (np.asarray(predicted) == y).astype(np.float64)
        if proba is not None and classes is not None:
            metric = "log_loss"
            index = {c: i for i, c in enumerate(classes)}
            p_true = proba[np.arange(len(y)), [index[v] for v in y]]
            loss = -np.log(np.clip(p_true, 1e-15, 1.0))
        else:
            metric = "error_rate"
            loss = 1.0 - correct
    overall = float(loss.mean())
    faults: list[Fault] = []
    for feature, condition, mask in _slices(features, X):
        rows = int(mask.sum())
        if rows < min_rows or rows == len(y):
            continue
        value = float(loss[mask].mean())
        if value <= overall:
            continue
        faults.append(
            Fault(
                feature=feature,
                condition=condition,
                rows=rows,
                metric=metric,
                value=round(value, 6),
                overall=round(overall, 6),
                accuracy=None if correct is None else round(float(correct[mask].mean()), 6),
            )
        )
    faults.sort(key=lambda f: f.value, reverse=True)
    return faults[:top]


def _slices(features: Sequence[Feature], X: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    out: list[tuple[str, str, np.ndarray]] = []
    for f in features:
        col = X[f.name]
        missing = col.isna().to_numpy()
        if missing.any():
            out.append((f.name, f"{f.name} is missing", missing))
        if f.kind in ("categorical", "boolean"):
            for value in sorted(col.dropna().astype(str).unique()):
                out.append(
                    (
                        f.name,
                        f"{f.name} = {value}",
                        (col.astype(str) == value).to_numpy() & ~missing,
                    )
                )
            continue
        x = col.to_numpy(dtype=np.float64, na_value=np.nan)
        present = x[~missing]
        if present.size == 0:
            continue
        edges = np.unique(np.quantile(present, [0.25, 0.5, 0.75]))
        bounds = [-np.inf, *edges, np.inf]
        for lo, hi in itertools.pairwise(bounds):
            mask = (x > lo) & (x <= hi) & ~missing
            out.append((f.name, f"{f.name} in ({_fmt(lo)}, {_fmt(hi)}]", mask))
    return out


def _fmt(x: float) -> str:
    return "-inf" if x == -np.inf else "inf" if x == np.inf else f"{x:.4g}"
