"""Render ``MODEL_CARD.md``: the manifest's facts, for people. Pure function of the manifest."""

from __future__ import annotations

from sklambda.manifest import CategoricalBaseline, Manifest


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


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
        "| | |",
        "|---|---|",
        f"| Task | {out.task} of `{out.target}` |",
    ]
    if out.classes is not None:
        lines.append(f"| Classes | {', '.join(str(c) for c in out.classes)} |")
    lines += [
        f"| Probabilities | {'yes' if out.probabilities else 'no'} |",
        f"| Created | {m.created} |",
        f"| Serving runtime | {m.runtime.serving}: {m.runtime.reason} |",
        f"| Libraries | {', '.join(f'{k} {v}' for k, v in m.libraries.items())} |",
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
    lines += [
        "",
        "## Input schema",
        "",
        "| Feature | Kind | Nullable | Categories / range | Unseen category |",
        "|---|---|---|---|---|",
    ]
    for f in m.features:
        if f.categories is not None:
            values = ", ".join(f.categories)
            unseen = "rejected" if f.unseen == "reject" else (f.unseen_handling or "scored")
        else:
            values = f"{_num(f.min)} to {_num(f.max)}" if f.min is not None else ""
            unseen = ""
        lines.append(
            f"| {f.name} | {f.kind} | {'yes' if f.nullable else 'no'} | {values} | {unseen} |"
        )
    lines += ["", "## Known faults", ""]
    if m.known_faults:
        lines += [
            "Holdout slices where the model does worse than on the whole holdout, worst first.",
            "",
            "| Slice | Rows | Metric | Slice value | Overall | Accuracy |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {f.condition} | {f.rows} | {f.metric} | {f.value:.4f} | {f.overall:.4f} | "
            f"{_num(f.accuracy)} |"
            for f in m.known_faults
        ]
    else:
        lines.append("No holdout slice large enough to judge scored worse than the whole holdout.")
    lines += ["", "## ONNX export", ""]
    if m.runtime.onnx is not None:
        p = m.runtime.onnx.parity
        lines += [
            f"- File `{m.runtime.onnx.file}`, opset {m.runtime.onnx.opset}, "
            f"{m.runtime.onnx.input_dtype} numeric inputs",
            f"- Parity on {p.rows} rows ({p.probes} of them probes): "
            f"label agreement {_num(p.label_agreement)}, "
            f"max probability difference {_num(p.max_abs_proba_diff)}, "
            f"max relative value difference {_num(p.max_rel_value_diff)} "
            f"(tolerance {p.tolerance:g})",
        ]
    else:
        lines.append(f"- No export: {m.runtime.reason}")
    lines += ["", "## Prediction baseline", ""]
    pred = m.baselines.prediction
    if isinstance(pred, CategoricalBaseline):
        lines += [f"- {k}: {v:.3f}" for k, v in pred.frequencies.items()]
    else:
        lines.append(
            f"- {len(pred.proportions)} quantile bins, edges {[_num(e) for e in pred.edges]}"
        )
    lines += ["", "## Artifact files", ""]
    lines += [f"- `{k}`: {v.bytes} bytes, SHA-256 `{v.sha256}`" for k, v in m.artifacts.items()]
    return "\n".join(lines) + "\n"
