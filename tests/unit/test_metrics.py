"""The metrics API: pure functions that build EMF records, read here without AWS."""

from __future__ import annotations

import json
from typing import Any

from sklambda.metrics import Dimension, MetricName, MetricSet, Unit, emf, per_value

DIMS = {"ModelName": "m", "ModelVersion": "1", "service": "predict"}


def parsed(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_a_record_declares_its_namespace_dimensions_and_units() -> None:
    record = json.loads(
        emf("ns", DIMS, {"A": 2.0, "B": [1.0, 3.0]}, {"A": Unit.COUNT}, timestamp_ms=5)
    )
    assert record["_aws"] == {
        "Timestamp": 5,
        "CloudWatchMetrics": [
            {
                "Namespace": "ns",
                "Dimensions": [["ModelName", "ModelVersion", "service"]],
                "Metrics": [{"Name": "A", "Unit": "Count"}, {"Name": "B", "Unit": "None"}],
            }
        ],
    }
    assert (record["A"], record["B"], record["service"]) == (2.0, [1.0, 3.0], "predict")


def test_a_value_per_class_is_one_record_per_class() -> None:
    records = parsed(per_value("ns", DIMS, "PredictedClass", "Class", {"a": 2, "b": 1}, "Count"))
    assert [(r["Class"], r["PredictedClass"]) for r in records] == [("a", 2), ("b", 1)]
    directive = records[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["ModelName", "ModelVersion", "service", "Class"]]


def test_a_metric_set_collects_one_invocation() -> None:
    metrics = MetricSet("ns", DIMS)
    metrics.add(MetricName.INSTANCES_PREDICTED, 3)
    metrics.add(MetricName.REQUEST_LATENCY, 1.5, Unit.MILLISECONDS)
    metrics.add(MetricName.REQUEST_LATENCY, 2.5, Unit.MILLISECONDS)
    metrics.add_per(MetricName.FEATURE_DRIFT, Dimension.FEATURE, {"x": 0.1}, Unit.NONE)
    metrics.add_alarmed(MetricName.FILES_FAILED, 1)
    metrics.add_alarmed(MetricName.FILES_FAILED, 0)
    main, feature, alarmed = parsed(metrics.records(timestamp_ms=1))
    assert main["InstancesPredicted"] == 3.0 and main["RequestLatency"] == [1.5, 2.5]
    assert feature["Feature"] == "x" and feature["FeatureDrift"] == 0.1
    # what the template's alarms name: the service dimension alone
    assert alarmed["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert alarmed["FilesFailed"] == [1.0, 0.0] and "ModelName" not in alarmed


def test_flush_writes_every_record_and_starts_empty() -> None:
    metrics = MetricSet("ns", DIMS)
    metrics.add(MetricName.COLD_START, 1)
    written: list[str] = []
    metrics.flush(written.append)
    assert len(written) == 1 and json.loads(written[0])["ColdStart"] == 1.0
    metrics.flush(written.append)
    assert len(written) == 1  # nothing more to write


def test_an_empty_set_writes_nothing() -> None:
    assert MetricSet("ns", DIMS).records() == []
