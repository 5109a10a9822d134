"""Each function's settings: read from its environment once, validated at init."""

from __future__ import annotations

import pytest

from sklambda.errors import ConfigurationError
from sklambda.settings import (
    BatchSettings,
    DriftSettings,
    PredictSettings,
    read_settings,
    variable,
)
from sklambda_tools.local import load_handler, new_execution_environment

from support import PENGUINS_DIR, REPO


def test_defaults_and_the_variables_behind_them() -> None:
    settings = read_settings(PredictSettings, {})
    assert settings.max_instances == 1000 and settings.capture_rate == 0.0
    assert variable("max_instances") == "SKLAMBDA_MAX_INSTANCES"
    assert variable("metrics_namespace") == "POWERTOOLS_METRICS_NAMESPACE"
    assert read_settings(PredictSettings, {"POWERTOOLS_SERVICE_NAME": "p"}).service == "p"


@pytest.mark.parametrize(
    ("kind", "env", "message"),
    [
        (BatchSettings, {}, "SKLAMBDA_DEAD_LETTER_QUEUE_URL is required"),
        (DriftSettings, {}, "SKLAMBDA_DATA_BUCKET is required"),
        (
            PredictSettings,
            {"SKLAMBDA_CAPTURE_RATE": "0.5"},
            "SKLAMBDA_CAPTURE_STREAM is required when SKLAMBDA_CAPTURE_RATE is above 0",
        ),
        (PredictSettings, {"SKLAMBDA_MAX_INSTANCES": "0"}, "SKLAMBDA_MAX_INSTANCES is invalid"),
        (
            BatchSettings,
            {"SKLAMBDA_DEAD_LETTER_QUEUE_URL": "q", "SKLAMBDA_UNKNOWN_COLUMNS": "x"},
            "SKLAMBDA_UNKNOWN_COLUMNS is invalid",
        ),
    ],
)
def test_a_missing_or_bad_setting_names_its_variable(
    kind: type, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_settings(kind, env)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("function", "variable_name"),
    [("batch", "SKLAMBDA_DEAD_LETTER_QUEUE_URL"), ("drift", "SKLAMBDA_DATA_BUCKET")],
)
def test_a_function_without_its_queue_or_bucket_fails_its_init(
    monkeypatch: pytest.MonkeyPatch, function: str, variable_name: str
) -> None:
    # Given a function's environment that lacks the resource it writes to
    monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
    monkeypatch.delenv(variable_name, raising=False)
    # When Lambda runs its init (imports the handler module)
    with pytest.raises(ConfigurationError, match=rf"^{variable_name} is required"):
        load_handler(REPO / "functions" / function / "app.py")
    new_execution_environment()
