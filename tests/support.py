"""Facts several test modules share: the sample bird, and the status each API event must get."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # the one repository-root constant of the tests
EVENTS = REPO / "events"
PENGUINS_DIR = REPO / "models" / "penguins"

# The first instance of samples/request.json (the body of events/predict-multi.json).
BIRD: dict[str, Any] = json.loads((REPO / "samples" / "request.json").read_text())["instances"][0]

# Every API Gateway event in events/ and the status it must get; a new event without an entry
# fails test_every_event_is_exercised.
EXPECTED_STATUS = {
    "predict-single.json": 200,
    "predict-multi.json": 200,
    "predict-invalid-instances.json": 422,
    "predict-empty.json": 422,
    "predict-not-json.json": 400,
    "predict-wrong-content-type.json": 415,
    "get-model.json": 200,
    "get-health.json": 200,
}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded
