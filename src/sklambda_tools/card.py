"""Render ``MODEL_CARD.md``: the manifest's facts, for people. Pure function of the manifest.

Only the figures a model has are shown: a regressor's ONNX parity is its value difference, a
classifier's its label agreement (and its probability difference when it has probabilities);
a table cell that does not apply says so (``—``) rather than staying empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from sklambda.manifest import CategoricalBaseline, Champion, Feature, Manifest, Parity

NOT_APPLICABLE = "—"


def _num(x: float | None) -> str:
    return NOT_APPLICABLE if x is None else f"{x:.4g}"


def _listed(items: Iterable[object], empty: str = "none") -> str:
    return ", ".join(str(i) for i in items) or empty


def _values(f: Feature) -> str:
    """The "Categories / range" cell of a feature."""
    if f.categories is not None:
        return _listed(f.categories, "none seen in training")
    if f.kind == "boolean":
        return "true or false"
    if f.min is not None and f.max is not None:
        return f"{_num(f.min)} to {_num(f.max)}"
    if f.min is not None:
        return f"from {_num(f.min)}"
    if f.max is not None:
        return f"up to {_num(f.max)}"
    return "not recorded"


def _unseen(f: Feature) -> str:
    """The "Unseen category" cell of a feature."""
    if f.categories is None:
        return NOT_APPLICABLE
    return "rejected" if f.unseen == "reject" else (f.unseen_handling or "scored")


def _parity_figures(m: Manifest, p: Parity) -> list[str]:
    """The parity figures that exist for the model's task, in words."""
    figures: list[tuple[str, float | None]]
    if m.output.task == "regression":
        figures = [("max relative value difference", p.max_rel_value_diff)]
    else:
        figures = [("label agreement", p.label_agreement)]
        if m.output.probabilities:
            figures.append(("max probability difference", p.max_abs_proba_diff))
    return [f"{name} {_num(value)}" for name, value in figures if value is not None]


def _figure(x: float) -> str:
    """A metric as recorded (six decimals at most), so that a comparison reads exactly."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _champion(c: Champion | None, rows: int) -> list[str]:
    """The "Champion" section: the model this one replaced and the comparison."""
    lines = ["", "## Champion", ""]
    if c is None:
        return [*lines, "No champion: this model was not compared with a model it replaces."]
    lines += [
        f"Compared with the model it replaces, {c.name} {c.version} ({c.runtime} runtime, "
        f"`model.json` SHA-256 `{c.manifest_sha256[:16]}…`), both scored on this model's "
        f"holdout ({rows} rows): {'passed' if c.passed else 'failed'}.",
        "",
        "| Metric | This model | Champion | Better | Tolerance | Passed |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {k.metric} | {_figure(k.candidate)} | {_figure(k.champion)} | {k.better} | "
        f"{k.tolerance:g} | {'yes' if k.passed else 'no'} |"
        for k in c.checks
    ]
    if c.skipped:
        lines += ["", *(f"- Not compared: {why}" for why in c.skipped.values())]
    return lines


def render_card(m: Manifest) -> str:
    """The model card for a manifest; the same manifest always gives the same text."""
    out = m.output
    lines = [
        f"# Model card: {m.name} {m.version}",
        "",
        m.description or "(no description)",
        "",
        "## Summary",
        "",
        "| Fact | Value |",
        "|---|---|",
        f"| Task | {out.task} of `{out.target}` |",
    ]
    if out.classes is not None:
        lines.append(f"| Classes | {_listed(out.classes)} |")
    lines += [
        f"| Probabilities | {'yes' if out.probabilities else 'no'} |",
        f"| Created | {m.created} |",
        f"| Serving runtime | {m.runtime.serving}: {m.runtime.reason} |",
        f"| Libraries | {_listed(f'{k} {v}' for k, v in m.libraries.items())} |",
        "",
        "## Data",
        "",
    ]
    if m.data.training is not None:
        t = m.data.training
        lines.append(f"- Training: {t.rows} rows, SHA-256 `{t.sha256[:16]}…`")
    h = m.data.holdout
    lines += [
        f"- Holdout ({m.metrics.split}): {h.rows} rows, SHA-256 `{h.sha256[:16]}…`",
        f"- Drift baselines from the {m.baselines.source} data ({m.baselines.rows} rows)",
        "",
        "## Holdout metrics",
        "",
        "| Metric | Value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.4f} |" for k, v in m.metrics.values.items()]
    if m.metrics.per_class_recall:
        lines += [f"| recall[{k}] | {v:.4f} |" for k, v in m.metrics.per_class_recall.items()]
    lines += [
        "",
        f"## Validation gate ({m.gate.source}): {'passed' if m.gate.passed else 'failed'}",
        "",
        "| Metric | Value | Rule | Passed |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c.metric} | {c.value:.4f} | {'≥' if c.op == 'min' else '≤'} {c.threshold:.4f} | "
        f"{'yes' if c.passed else 'no'} |"
        for c in m.gate.checks
    ]
    lines += _champion(m.champion, m.metrics.rows)
    lines += [
        "",
        "## Input schema",
        "",
        "| Feature | Kind | Nullable | Categories / range | Unseen category |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.name} | {f.kind} | {'yes' if f.nullable else 'no'} | {_values(f)} | {_unseen(f)} |"
        for f in m.features
    ]
    lines += ["", "## Known faults", ""]
    if m.known_faults:
        # a regressor's slices have no accuracy: no Accuracy column then
        accuracy = any(f.accuracy is not None for f in m.known_faults)
        lines += [
            "Holdout slices where the model does worse than on the whole holdout, worst first.",
            "",
            "| Slice | Rows | Metric | Slice value | Overall |"
            + (" Accuracy |" if accuracy else ""),
            "|---|---|---|---|---|" + ("---|" if accuracy else ""),
        ]
        lines += [
            f"| {f.condition} | {f.rows} | {f.metric} | {f.value:.4f} | {f.overall:.4f} |"
            + (f" {_num(f.accuracy)} |" if accuracy else "")
            for f in m.known_faults
        ]
    else:
        lines.append("No holdout slice large enough to judge scored worse than the whole holdout.")
    lines += ["", "## ONNX export", ""]
    if m.runtime.onnx is not None:
        p = m.runtime.onnx.parity
        figures = _parity_figures(m, p)
        lines += [
            f"- File `{m.runtime.onnx.file}`, opset {m.runtime.onnx.opset}, "
            f"{m.runtime.onnx.input_dtype} numeric inputs",
            f"- Parity on {p.rows} rows ({p.probes} of them probes)"
            + (f": {', '.join(figures)} (tolerance {p.tolerance:g})" if figures else "")
            + ("" if figures else f", tolerance {p.tolerance:g}"),
        ]
    else:
        lines.append(f"- No export: {m.runtime.reason}")
    lines += ["", "## Prediction baseline", ""]
    pred = m.baselines.prediction
    if isinstance(pred, CategoricalBaseline):
        lines += [f"- {k}: {v:.3f}" for k, v in pred.frequencies.items()]
    else:
        bins = len(pred.proportions)
        lines.append(
            f"- {bins} quantile {'bin' if bins == 1 else 'bins'}"
            + (f", edges {_listed(_num(e) for e in pred.edges)}" if pred.edges else "")
        )
    lines += ["", "## Artifact files", ""]
    lines += [f"- `{k}`: {v.bytes} bytes, SHA-256 `{v.sha256}`" for k, v in m.artifacts.items()]
    return "\n".join(lines) + "\n"
