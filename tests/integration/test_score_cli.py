"""`python -m sklambda.score`: JSON Lines in, the API's answers out, offline, in a process that
imports nothing of AWS, Powertools, pandas or scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from sklambda.model import load
from sklambda.scoring import predict_all, score_records

from support import BIRD, PENGUINS_DIR, REPO

MODEL = load(PENGUINS_DIR)
FORBIDDEN = ("boto3", "botocore", "aws_lambda_powertools", "pandas", "sklearn", "pydantic")


def score(stdin: str | bytes, *args: str) -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [sys.executable, "-m", "sklambda.score", str(PENGUINS_DIR), *args],
        input=data,
        capture_output=True,
        check=False,
        cwd=REPO,
        timeout=120,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def test_each_line_gets_the_apis_answer_or_its_reasons_in_order() -> None:
    unseen = {**BIRD, "island": "Anvers"}
    lines = [
        json.dumps(BIRD),
        json.dumps({**BIRD, "island": 3}),
        "",
        "not json",
        json.dumps({**BIRD, "colour": "grey"}),
        json.dumps(unseen),
    ]
    done = score(("\n".join(lines) + "\n").encode() + b'{"island": "Dr\xe9am"}\n')
    assert (done.returncode, done.stderr) == (0, "")
    got = {answer["row"]: answer for answer in map(json.loads, done.stdout.splitlines())}
    assert list(got) == [1, 2, 4, 5, 6, 7]  # the blank line is no row
    online = predict_all(MODEL, [BIRD, unseen]).predictions()
    assert got[1] == {"row": 1, **online[0]} and got[6] == {"row": 6, **online[1]}
    refused = score_records(MODEL, [{**BIRD, "island": 3}, {**BIRD, "colour": "grey"}])
    by_row: dict[int, list[dict[str, Any]]] = {}
    for error in refused.errors:
        by_row.setdefault(error.row, []).append({"field": error.field, "reason": error.reason})
    assert got[2]["errors"] == by_row[0] and got[5]["errors"] == by_row[1]
    assert got[4]["errors"][0]["reason"].startswith("not valid JSON")
    assert got[7]["errors"] == [{"field": None, "reason": "not UTF-8 text"}]


def test_unknown_features_may_be_ignored_as_batch_ignores_them() -> None:
    done = score(json.dumps({**BIRD, "colour": "grey"}) + "\n", "--unknown", "ignore")
    (answer,) = map(json.loads, done.stdout.splitlines())
    assert answer == {"row": 1, **predict_all(MODEL, [BIRD]).predictions()[0]}


def test_a_long_input_is_answered_chunk_by_chunk_in_order() -> None:
    done = score((json.dumps(BIRD) + "\n") * 5000, "--chunk-rows", "7")
    rows = [json.loads(line)["row"] for line in done.stdout.splitlines()]
    assert rows == list(range(1, 5001))


def test_a_model_that_does_not_load_is_one_line_and_status_2(tmp_path: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sklambda.score", str(tmp_path)],
        input="",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("python -m sklambda.score: the model does not load")
    assert len(done.stderr.splitlines()) == 1


def test_it_imports_the_runtime_and_nothing_of_aws_pandas_or_scikit_learn() -> None:
    probe = (
        "import json, runpy, sys\n"
        f"sys.argv = ['sklambda.score', {str(PENGUINS_DIR)!r}]\n"
        "try:\n    runpy.run_module('sklambda.score', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "roots = {name.split('.')[0] for name in sys.modules}\n"
        "sys.stderr.write(json.dumps(sorted(roots)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        input=json.dumps(BIRD) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    imported = set(json.loads(done.stderr))
    assert json.loads(done.stdout)["row"] == 1
    assert "onnxruntime" in imported and "numpy" in imported
    assert not imported & set(FORBIDDEN), sorted(imported & set(FORBIDDEN))
