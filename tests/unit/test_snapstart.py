"""SnapStart: the hooks the handlers register, called as the Lambda runtime calls them.

Each test imports a handler as a new execution environment (``load_handler``), then runs what
the runtime runs for a SnapStart version: the before-snapshot hooks once, in reverse order of
registration and taken off the registry, and the after-restore hooks in each environment
resumed from the snapshot. A resumed environment is played by putting back the state the
snapshot froze (the generators' state, the modules as the hooks left them).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
import snapshot_restore_py
from moto import mock_aws
from sklearn.pipeline import Pipeline

from sklambda import aws, snapstart
from sklambda.errors import IntegrityError
from sklambda.model import Model, load
from sklambda.probes import PROBES_FILE
from sklambda.probes import read as read_probes
from sklambda.scoring import predict_all
from sklambda_tools.local import LambdaContext, load_handler, new_execution_environment
from sklambda_tools.package import build

from support import EVENTS, PENGUINS_DIR, REPO, event

PREDICT = REPO / "functions" / "predict" / "app.py"
BATCH = REPO / "functions" / "batch" / "app.py"
REGION = "us-east-1"
BUCKET = "snapstart-data"
FIRST_PROBE = read_probes(PENGUINS_DIR, load(PENGUINS_DIR).manifest).rows[0].instance


def take_snapshot() -> None:
    """What the runtime does once, before the snapshot: every before-snapshot hook, last
    registered first, each taken off the registry. An exception escapes, as it does there (the
    runtime then reports ``Runtime.BeforeSnapshotError`` and the version is not published)."""
    registry = snapshot_restore_py.get_before_snapshot()
    while registry:
        func, args, kwargs = registry.pop()
        func(*args, **kwargs)


def restore() -> None:
    """What the runtime does in each environment resumed from the snapshot."""
    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)


def ours(registry: list[Any], hook: Callable[[], None]) -> int:
    return sum(1 for entry in registry if entry[0] is hook)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and a region; the runtime's registries, the generators' state and the
    execution environment as they were, after the test."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sklambda-test")
    monkeypatch.delenv("SKLAMBDA_RUNTIME", raising=False)
    registries = snapshot_restore_py.get_before_snapshot(), snapshot_restore_py.get_after_restore()
    saved = [list(r) for r in registries]
    random_state, numpy_state = random.getstate(), np.random.get_state()
    yield
    for registry, entries in zip(registries, saved, strict=True):
        registry[:] = entries
    random.setstate(random_state)
    np.random.set_state(numpy_state)
    new_execution_environment()


@pytest.fixture
def make_predict(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    def make(model_dir: Path = PENGUINS_DIR, **env: str) -> ModuleType:
        monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(model_dir))
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "predict")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return load_handler(PREDICT)

    return make


@pytest.fixture
def make_batch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """The batch function in a mocked account (its bucket and dead-letter queue)."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        queue = boto3.client("sqs", region_name=REGION).create_queue(QueueName="dlq")

        def make(**env: str) -> ModuleType:
            monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
            monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "batch")
            monkeypatch.setenv("SKLAMBDA_DEAD_LETTER_QUEUE_URL", queue["QueueUrl"])
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            module = load_handler(BATCH)
            module.test_s3 = s3
            return module

        yield make


def status(app: ModuleType, name: str) -> int:
    response = app.lambda_handler(event(name), LambdaContext(function_name="predict"))
    return int(response["statusCode"])


def count_scoring(monkeypatch: pytest.MonkeyPatch, model: Model) -> list[dict[str, Any]]:
    """The rows the model's runtime scores from now on, one dict of column values a call."""
    calls: list[dict[str, Any]] = []
    real = model.backend.score

    def score(columns: Any, probabilities: bool) -> Any:
        calls.append({name: col.tolist() for name, col in columns.items()})
        return real(columns, probabilities)

    monkeypatch.setattr(model.backend, "score", score)
    return calls


# --- registration -------------------------------------------------------------------------------


@pytest.mark.parametrize("handler", ["predict", "batch"])
def test_each_handler_registers_one_hook_a_phase_however_often_it_is_loaded(
    handler: str,
    make_predict: Callable[..., ModuleType],
    make_batch: Callable[..., ModuleType],
) -> None:
    make = make_predict if handler == "predict" else make_batch
    for _ in range(3):  # three execution environments in one process, as the tests make them
        make()
    assert ours(snapshot_restore_py.get_before_snapshot(), snapstart._before_snapshot) == 1
    assert ours(snapshot_restore_py.get_after_restore(), snapstart._after_restore) == 1


def test_without_snapstart_the_hooks_never_run_and_the_init_is_as_before(
    make_batch: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a spy on the warm-up, and the batch function imported as Lambda imports it
    warmed: list[Model] = []
    monkeypatch.setattr(snapstart, "warm", warmed.append)
    state = random.getstate()
    app = make_batch()
    # Then importing it scored nothing, dropped no client, reseeded nothing: a function without
    # SnapStart is never given the hooks to run
    assert warmed == []
    assert aws.client.cache_info().currsize == 1  # the S3 client its init made, still cached
    assert random.getstate() == state
    assert app.model.name == "penguins"


def test_importing_the_module_loads_nothing_heavy() -> None:
    # The hooks' module is imported by register(), numpy and boto3 by what needs them
    code = (
        "import sys, sklambda.snapstart\n"
        "print(sorted(m for m in ('numpy', 'boto3', 'snapshot_restore_py', 'sklambda.model',"
        " 'sklambda.probes', 'sklambda.scoring') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == "[]"


def test_without_the_hooks_library_registration_is_a_harmless_no_op(
    make_predict: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given snapshot_restore_py that cannot be imported (a Python older than the 3.12 runtimes,
    # or an environment without the dev pin)
    before = list(snapshot_restore_py.get_before_snapshot())
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)
    assert snapstart.available() is False
    # When the predict function is imported and registers
    app = make_predict()
    # Then nothing was registered, registering says so, and the function answers as ever
    assert snapstart.register(lambda: app._model) is False
    assert snapshot_restore_py.get_before_snapshot() == before
    assert status(app, "predict-single.json") == 200
    assert status(app, "get-health.json") == 200


# --- before the snapshot ------------------------------------------------------------------------


def test_the_predict_model_is_loaded_and_scored_before_the_snapshot(
    make_predict: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_predict()
    calls = count_scoring(monkeypatch, app._model)
    take_snapshot()
    # The runtime scored one row, the probe file's first, through the core
    assert len(calls) == 1
    assert calls[0] == {name: [value] for name, value in FIRST_PROBE.items()}
    # and a request after a restore is answered by the same model, without loading it again
    restore()
    assert status(app, "predict-single.json") == 200
    assert len(calls) == 2


def test_the_batch_model_is_scored_before_the_snapshot_and_files_after_it(
    make_batch: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_batch()
    calls = count_scoring(monkeypatch, app.model)
    take_snapshot()
    assert calls == [{name: [value] for name, value in FIRST_PROBE.items()}]


@pytest.fixture(scope="module")
def customers_model(
    fitted: dict[str, Pipeline],
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> Model:
    """A model with every kind of feature (integer, numeric, categorical, boolean), without
    its probe file in the manifest (as a model packaged before probe files were recorded)."""
    out = tmp_path_factory.mktemp("customers") / "binary"
    build(fitted["binary"], holdout_frame, "churn", out, name="binary", train=train_frame)
    model = load(out)
    artifacts = {k: v for k, v in model.manifest.artifacts.items() if k != PROBES_FILE}
    return Model(replace(model.manifest, artifacts=artifacts), model.backend, model.runtime, out)


def test_a_model_without_a_probe_file_is_warmed_with_a_row_built_from_its_manifest(
    customers_model: Model,
) -> None:
    row = snapstart.warm_row(customers_model)
    kinds = {f.name: f.kind for f in customers_model.manifest.features}
    assert sorted(kinds.values()) == ["boolean", "categorical", "integer", "numeric"]
    assert set(row) == set(kinds)
    # a row the schema takes as it is (no note either) and the model scores
    scored = predict_all(customers_model, [row])
    assert scored.notes == [] and len(scored.predictions()) == 1
    snapstart.warm(customers_model)


def test_a_model_that_does_not_load_fails_the_snapshot_with_its_own_error(
    make_predict: Callable[..., ModuleType], penguins_copy: Path
) -> None:
    # Given a tampered graph: without SnapStart the function starts and answers 503
    graph = penguins_copy / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    app = make_predict(penguins_copy)
    assert status(app, "get-health.json") == 503
    # When the runtime runs the before-snapshot hooks of a SnapStart version
    with pytest.raises(IntegrityError) as raised:
        take_snapshot()
    # Then the model's own error escapes (the runtime reports it and the version is not
    # published: no snapshot that answers 503 from every environment)
    assert raised.value is app._load_error
    assert "model.onnx does not match model.json" in str(raised.value)


def test_a_model_that_loads_but_cannot_score_fails_the_snapshot(
    make_batch: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_batch()

    def broken(columns: Any, probabilities: bool) -> Any:
        raise RuntimeError("the graph's kernel failed")

    monkeypatch.setattr(app.model.backend, "score", broken)
    # the scoring error escapes as it was raised, and the version is not published
    with pytest.raises(RuntimeError, match="kernel failed"):
        take_snapshot()


# --- after the restore --------------------------------------------------------------------------


def test_the_batch_s3_client_of_the_init_is_not_the_one_used_after_a_restore(
    make_batch: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_batch()
    init_client = aws.client("s3")  # the one the init made (cached)
    take_snapshot()
    # No client, and no session holding credentials, is in the snapshot
    assert aws.client.cache_info().currsize == 0
    assert boto3.DEFAULT_SESSION is None
    restore()
    # When a file arrives after the restore
    used: list[Any] = []
    real = app.process_object

    def spy(s3: Any, *args: Any, **kwargs: Any) -> Any:
        used.append(s3)
        return real(s3, *args, **kwargs)

    monkeypatch.setattr(app, "process_object", spy)
    key = "incoming/birds.csv"
    body = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex\n"
    body += "Biscoe,48.6,16.0,230.0,5800.0,male\n"
    put = app.test_s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    ev = copy.deepcopy(json.loads((EVENTS / "s3-put-csv.json").read_text()))
    ev["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    ev["Records"][0]["s3"]["object"].update(
        {"key": key, "eTag": put["ETag"].strip('"'), "size": len(body)}
    )
    ev["Records"][0]["s3"]["object"].pop("versionId", None)
    result = app.lambda_handler(ev, LambdaContext(function_name="batch", timeout_seconds=900))
    # Then it is scored with a client made after the restore, not the init's
    assert result["results"][0]["status"] == "succeeded", result
    (client,) = used
    assert client is not init_client
    assert client is aws.client("s3")


def test_a_client_made_by_a_later_before_snapshot_hook_is_dropped_at_restore(
    make_batch: Callable[..., ModuleType],
) -> None:
    # Given a hook registered before the handler's (a library imported first): the runtime
    # runs it after the handler's, once the clients were dropped, and it makes one
    made: list[Any] = []
    snapshot_restore_py.get_before_snapshot().clear()  # a fresh runtime: an earlier test's
    snapshot_restore_py.get_after_restore().clear()  # handler registered nothing yet
    snapshot_restore_py.register_before_snapshot(lambda: made.append(aws.client("sqs")))
    make_batch()
    take_snapshot()
    assert aws.client("sqs") is made[0]  # in the snapshot
    restore()
    assert aws.client("sqs") is not made[0]


def test_the_capture_client_made_before_the_snapshot_is_not_used_after_a_restore(
    make_predict: Callable[..., ModuleType],
) -> None:
    app = make_predict(SKLAMBDA_CAPTURE_RATE="1", SKLAMBDA_CAPTURE_STREAM="captures")
    before = app.capture._client()
    assert app.capture._client() is before  # cached within an environment
    take_snapshot()
    restore()
    after = app.capture._client()
    assert after is not before
    assert after._client_config.read_timeout == before._client_config.read_timeout == 0.25


def draws(app: ModuleType, n: int = 64) -> list[bool]:
    return [app.capture.sampled() for _ in range(n)]


def test_environments_restored_from_one_snapshot_draw_different_capture_samples(
    make_predict: Callable[..., ModuleType],
) -> None:
    app = make_predict(SKLAMBDA_CAPTURE_RATE="0.5", SKLAMBDA_CAPTURE_STREAM="captures")
    take_snapshot()
    frozen, frozen_numpy = random.getstate(), np.random.get_state()
    # Without the hook, two environments resumed from the snapshot draw the same sample
    random.setstate(frozen)
    first = draws(app)
    random.setstate(frozen)
    assert draws(app) == first
    # With it, each draws its own (the chance that 64 draws at 0.5 agree is 2**-64)
    samples, numbers = [], []
    for _ in range(2):
        random.setstate(frozen)
        np.random.set_state(frozen_numpy)
        restore()
        samples.append(draws(app))
        numbers.append(np.random.random(4).tolist())
    assert samples[0] != samples[1]
    assert numbers[0] != numbers[1]
    assert 0 < sum(samples[0]) < 64


def test_log_sampling_is_drawn_again_in_each_restored_environment(
    make_predict: Callable[..., ModuleType],
) -> None:
    # Powertools draws the DEBUG sample of POWERTOOLS_LOGGER_SAMPLE_RATE at init: frozen in the
    # snapshot, every environment would log at the same level
    app = make_predict(POWERTOOLS_LOGGER_SAMPLE_RATE="0.5")
    take_snapshot()
    frozen = random.getstate()
    levels = set()
    for _ in range(24):
        random.setstate(frozen)
        restore()
        levels.add(app.logger.log_level)
    assert levels == {logging.DEBUG, logging.INFO}
