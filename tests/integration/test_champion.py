"""The champion gate: only a model at least as good as the one it replaces is packaged, both
scored on the candidate's holdout; the manifest and the card record the comparison."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from test_card import empty_fields

from sklambda.manifest import ChampionCheck, json_schema, parse_manifest, read_manifest
from sklambda_tools import evaluate
from sklambda_tools.card import render_card
from sklambda_tools.errors import GateFailed, PackagingError
from sklambda_tools.examples import penguins
from sklambda_tools.package import Packaged, build, main, summary

from pipelines import FEATURES, preprocessor, synthetic_frame
from support import PENGUINS_DIR, REPO

TARGET = penguins.TARGET
# On the example's test split: C=10 gets 68 of 69 birds right (0.985507), C=0.1 one fewer
# (0.971014: 0.014493 worse), C=0.001 55 (0.797101); all pass the built-in default gate.
STRONG, SLIGHTLY_WORSE, WEAK = 10.0, 0.1, 0.001


@pytest.fixture(scope="module")
def splits() -> penguins.Splits:
    return penguins.split(penguins.load_frame())


@pytest.fixture(scope="module")
def fitted(splits: penguins.Splits) -> dict[str, Pipeline]:
    train = splits.train
    return {
        name: penguins.make_pipeline(c).fit(train[penguins.FEATURES], train[TARGET])
        for name, c in (("strong", STRONG), ("slightly_worse", SLIGHTLY_WORSE), ("weak", WEAK))
    }


@pytest.fixture(scope="module")
def packaged(
    fitted: dict[str, Pipeline], splits: penguins.Splits, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Packaged]:
    """Each pipeline packaged once, without a champion (do not change them: copy first)."""
    root = tmp_path_factory.mktemp("champions")
    return {
        name: build(pipeline, splits.test, TARGET, root / name, name=name, version=f"{name}-1")
        for name, pipeline in fitted.items()
    }


@pytest.fixture(scope="module")
def files(
    fitted: dict[str, Pipeline], splits: penguins.Splits, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The pipelines as joblib files and the holdout as CSV, for the command line."""
    root = tmp_path_factory.mktemp("files")
    out = {}
    for name, pipeline in fitted.items():
        out[name] = root / f"{name}.joblib"
        joblib.dump(pipeline, out[name])
    out["holdout"] = root / "holdout.csv"
    splits.test.to_csv(out["holdout"], index=False)
    return out


def cli(files: dict[str, Path], model: str, out: Path, *more: str) -> int:
    return main(
        [
            "--model",
            str(files[model]),
            "--data",
            str(files["holdout"]),
            "--target",
            TARGET,
            "--name",
            model,
            "--out",
            str(out),
            *more,
        ]
    )


def copy_of(packaged: Packaged, dest: Path) -> Path:
    shutil.copytree(packaged.path, dest)
    return dest


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file in the directory (hidden ones too) and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gate_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(text)
    return path


# --- the comparison ----------------------------------------------------------------------


def test_a_better_candidate_passes_and_the_manifest_and_card_record_both(
    fitted: dict[str, Pipeline],
    packaged: dict[str, Packaged],
    splits: penguins.Splits,
    tmp_path: Path,
) -> None:
    # Given a weak champion
    weak = packaged["weak"]
    before = snapshot(weak.path)
    # When a stronger candidate is packaged against it
    result = build(
        fitted["strong"], splits.test, TARGET, tmp_path / "new", name="new", champion=weak.path
    )
    # Then the manifest records the champion and the comparison, as written to disk
    c = result.manifest.champion
    assert c is not None and read_manifest(result.path) == result.manifest
    assert (c.name, c.version, c.runtime) == ("weak", "weak-1", weak.manifest.runtime.serving)
    assert c.manifest_sha256 == sha256(weak.path / "model.json")
    # the champion scored on the candidate's holdout gets the metrics it was packaged with
    assert c.metrics.rows == len(splits.test)
    assert c.metrics.values == pytest.approx(weak.manifest.metrics.values, abs=1e-6)
    assert c.checks == [
        ChampionCheck(
            metric="accuracy",  # the built-in default gate's metric
            candidate=0.985507,
            champion=0.797101,
            better="higher",
            tolerance=0.0,
            passed=True,
        )
    ]
    assert c.passed and c.skipped == {}
    # and the card has the table, the summary a line
    card = render_card(result.manifest)
    section = card.split("## Champion\n")[1].split("## ")[0]
    assert "weak weak-1 (" in section and c.manifest_sha256[:16] in section
    assert "| accuracy | 0.985507 | 0.797101 | higher | 0 | yes |" in section
    assert empty_fields(card) == []
    assert "champion weak weak-1 (" in summary(result) and "accuracy 0.985507 vs 0.797101" in (
        summary(result)
    )
    # and the champion was only read
    assert snapshot(weak.path) == before


def test_a_worse_candidate_is_refused_and_the_champion_in_the_output_stays_as_it_was(
    files: dict[str, Path],
    packaged: dict[str, Packaged],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the strong model packaged where the weak one would go
    out = copy_of(packaged["strong"], tmp_path / "models" / "penguins")
    before = snapshot(out)
    # When the weak candidate is packaged there (the model there is the champion)
    code = cli(files, "weak", out)
    # Then it is refused (exit 1), naming the metric, both values and the tolerance
    err = capsys.readouterr().err
    assert code == 1, err
    assert "champion gate failed" in err and "champion strong strong-1" in err
    assert "accuracy: the candidate's 0.797101 is worse than the champion's 0.985507" in err
    assert "by more than the tolerance 0 (higher is better)" in err
    # and nothing in the champion's directory changed, nor was added
    assert snapshot(out) == before


def test_a_worse_candidate_against_a_named_champion_writes_nothing(
    files: dict[str, Path], packaged: dict[str, Packaged], tmp_path: Path
) -> None:
    champion = packaged["strong"].path
    before = snapshot(champion)
    out = tmp_path / "new"
    assert cli(files, "weak", out, "--champion", str(champion)) == 1
    assert not out.exists()
    assert snapshot(champion) == before


def test_a_tolerance_lets_a_slightly_worse_candidate_pass(
    fitted: dict[str, Pipeline],
    packaged: dict[str, Packaged],
    splits: penguins.Splits,
    tmp_path: Path,
) -> None:
    # Given a gate file that allows 0.02 of accuracy
    path = gate_file(
        tmp_path, "[thresholds]\naccuracy = { min = 0.9 }\n\n[champion]\ntolerance = 0.02\n"
    )
    # When a candidate 0.014493 worse than the champion is packaged
    result = build(
        fitted["slightly_worse"],
        splits.test,
        TARGET,
        tmp_path / "ok",
        name="ok",
        gate=evaluate.read_gate(path),
        gate_source=str(path),
        champion=packaged["strong"].path,
        champion_rule=evaluate.read_champion(path),
    )
    # Then it passes, and the tolerance is recorded
    c = result.manifest.champion
    assert c is not None
    (check,) = c.checks
    assert (check.metric, check.candidate, check.champion) == ("accuracy", 0.971014, 0.985507)
    assert (check.tolerance, check.passed) == (0.02, True)
    assert "| accuracy | 0.971014 | 0.985507 | higher | 0.02 | yes |" in render_card(
        result.manifest
    )


@pytest.mark.parametrize(
    "champion_table",
    [
        "",  # no [champion] table: the primary metric, no tolerance
        "[champion]\nmetrics = ['accuracy']\n",
        "[champion]\ntolerance = 0.01\n",  # less than the 0.014493 it is worse by
        "[champion]\nmetrics = ['log_loss', 'accuracy']\ntolerance = { log_loss = 0.5 }\n",
    ],
)
def test_without_enough_tolerance_the_slightly_worse_candidate_is_refused(
    fitted: dict[str, Pipeline],
    packaged: dict[str, Packaged],
    splits: penguins.Splits,
    tmp_path: Path,
    champion_table: str,
) -> None:
    path = gate_file(tmp_path, "[thresholds]\naccuracy = { min = 0.9 }\n\n" + champion_table)
    with pytest.raises(GateFailed) as caught:
        build(
            fitted["slightly_worse"],
            splits.test,
            TARGET,
            tmp_path / "no",
            name="no",
            gate=evaluate.read_gate(path),
            gate_source="gate.toml",
            champion=packaged["strong"].path,
            champion_rule=evaluate.read_champion(path),
        )
    message = str(caught.value)
    assert "champion gate failed (gate.toml; champion strong strong-1)" in message
    assert "accuracy: the candidate's 0.971014 is worse than the champion's 0.985507" in message
    tolerance = "0.01" if "0.01" in champion_table else "0"
    assert f"the tolerance {tolerance} (higher is better)" in message
    assert "log_loss" not in message  # worse, but within its own tolerance
    assert not (tmp_path / "no").exists()


def test_the_primary_metric_is_the_first_threshold_and_lower_log_loss_is_better(
    fitted: dict[str, Pipeline],
    packaged: dict[str, Packaged],
    splits: penguins.Splits,
    tmp_path: Path,
) -> None:
    # Given a gate file whose first threshold is log loss, When a better candidate is packaged
    result = build(
        fitted["strong"],
        splits.test,
        TARGET,
        tmp_path / "p",
        name="p",
        gate={"log_loss": ("max", 1.0), "accuracy": ("min", 0.5)},
        champion=packaged["slightly_worse"].path,
    )
    c = result.manifest.champion
    assert c is not None
    (check,) = c.checks
    assert (check.metric, check.better) == ("log_loss", "lower")
    assert check.candidate < check.champion
    # and the other way round is refused on log loss
    with pytest.raises(GateFailed, match=r"log_loss: the candidate's 0\.139592 is worse"):
        build(
            fitted["slightly_worse"],
            splits.test,
            TARGET,
            tmp_path / "q",
            name="q",
            gate={"log_loss": ("max", 1.0)},
            champion=packaged["strong"].path,
        )


# --- which champion ----------------------------------------------------------------------


def test_the_model_in_the_output_directory_is_the_champion(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a model packaged into a directory (nothing there to compare with)
    out = tmp_path / "models" / "strong"
    assert cli(files, "strong", out) == 0
    assert read_manifest(out).champion is None
    first = read_manifest(out)
    first_sha = sha256(out / "model.json")
    capsys.readouterr()
    # When the same pipeline is packaged there again
    assert cli(files, "strong", out) == 0
    # Then the first is its champion, and the tie passes
    c = read_manifest(out).champion
    assert c is not None
    assert (c.name, c.version, c.manifest_sha256) == (first.name, first.version, first_sha)
    assert [(k.candidate, k.champion, k.passed) for k in c.checks] == [(0.985507, 0.985507, True)]
    assert f"champion strong {first.version} (" in capsys.readouterr().out


def test_no_champion_skips_the_comparison(
    files: dict[str, Path],
    packaged: dict[str, Packaged],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the strong model where the weak one goes
    out = copy_of(packaged["strong"], tmp_path / "m")
    # When the weak one is packaged there with --no-champion
    assert cli(files, "weak", out, "--no-champion") == 0
    # Then it replaced the strong one, and nothing records a champion
    manifest = read_manifest(out)
    assert manifest.name == "weak" and manifest.champion is None
    card = (out / "MODEL_CARD.md").read_text()
    assert (
        "## Champion\n\nNo champion: this model was not compared with a model it replaces." in card
    )
    assert "  champion: none (not compared with a model it replaces)" in capsys.readouterr().out


def test_the_champion_can_be_named_by_its_model_json(
    files: dict[str, Path], packaged: dict[str, Packaged], tmp_path: Path
) -> None:
    champion = packaged["weak"].path / "model.json"
    out = tmp_path / "new"
    assert cli(files, "strong", out, "--champion", str(champion)) == 0
    c = read_manifest(out).champion
    assert c is not None and (c.name, c.manifest_sha256) == ("weak", sha256(champion))


def test_an_explicit_champion_wins_over_the_model_in_the_output_directory(
    files: dict[str, Path], packaged: dict[str, Packaged], tmp_path: Path
) -> None:
    out = copy_of(packaged["strong"], tmp_path / "m")
    assert cli(files, "slightly_worse", out, "--champion", str(packaged["weak"].path)) == 0
    c = read_manifest(out).champion
    assert c is not None and c.name == "weak"


def test_the_in_memory_api_has_no_implicit_champion(
    fitted: dict[str, Pipeline],
    packaged: dict[str, Packaged],
    splits: penguins.Splits,
    tmp_path: Path,
) -> None:
    out = copy_of(packaged["strong"], tmp_path / "m")
    result = build(fitted["weak"], splits.test, TARGET, out, name="weak")
    assert result.manifest.champion is None


# --- comparisons that cannot be made ----------------------------------------------------


def _pipeline(numeric: list[str], categorical: list[str], unseen: str = "ignore") -> Pipeline:
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            ),
            ("cat", OneHotEncoder(handle_unknown=unseen), categorical),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression(C=1.0, max_iter=2000))])


def test_a_champion_that_rejects_a_holdout_row_makes_the_comparison_impossible(
    files: dict[str, Path],
    splits: penguins.Splits,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a champion that never saw Torgersen island and rejects unseen islands
    seen = splits.train[splits.train["island"] != "Torgersen"]
    held = splits.test[splits.test["island"] != "Torgersen"]
    strict = _pipeline(penguins.NUMERIC, penguins.CATEGORICAL, unseen="error")
    strict.fit(seen[penguins.FEATURES], seen[TARGET])
    champion = build(strict, held, TARGET, tmp_path / "strict", name="strict").path
    before = snapshot(champion)
    # When a candidate is compared with it on a holdout with Torgersen birds
    out = tmp_path / "new"
    code = cli(files, "strong", out, "--champion", str(champion))
    # Then packaging stops (exit 2) naming the first such row and the reason
    err = capsys.readouterr().err
    assert code == 2, err
    first = splits.test["island"].tolist().index("Torgersen")
    torgersen = int((splits.test["island"] == "Torgersen").sum())
    assert (
        f"the champion strict {champion_version(champion)} cannot score every row of the "
        "candidate's holdout, so the two cannot be compared: "
        f"holdout row {first}, island: unknown category 'Torgersen'; expected one of "
        f"['Biscoe', 'Dream'] ({torgersen} rows rejected); package with --no-champion"
    ) in err
    assert "Traceback" not in err and not out.exists() and snapshot(champion) == before


def champion_version(path: Path) -> str:
    return read_manifest(path).version


def test_a_champion_that_needs_a_feature_the_holdout_lacks_is_refused(
    files: dict[str, Path],
    splits: penguins.Splits,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a champion that needs a column the candidate's holdout does not have
    train = splits.train.assign(ring=np.arange(len(splits.train), dtype=np.float64))
    test = splits.test.assign(ring=np.arange(len(splits.test), dtype=np.float64))
    other = _pipeline([*penguins.NUMERIC, "ring"], penguins.CATEGORICAL)
    other.fit(train[[*penguins.FEATURES, "ring"]], train[TARGET])
    champion = build(other, test, TARGET, tmp_path / "ringed", name="ringed").path
    # When a candidate is packaged against it
    code = cli(files, "strong", tmp_path / "new", "--champion", str(champion))
    # Then it is an error naming the feature, not a trace
    err = capsys.readouterr().err
    assert code == 2, err
    assert "holdout row 0, ring: the champion needs this feature, and the holdout has no such " in (
        err
    )
    assert "--no-champion" in err and "Traceback" not in err


def test_a_champion_with_fewer_or_more_features_is_scored_on_its_own(
    fitted: dict[str, Pipeline],
    packaged: dict[str, Packaged],
    splits: penguins.Splits,
    tmp_path: Path,
) -> None:
    # Given a candidate without the sex feature, and the strong champion that has it
    numeric_only = _pipeline(penguins.NUMERIC, ["island"])
    features = [f for f in penguins.FEATURES if f != "sex"]
    numeric_only.fit(splits.train[features], splits.train[TARGET])
    strong = packaged["strong"]
    result = build(
        numeric_only,
        splits.test,
        TARGET,
        tmp_path / "n",
        name="n",
        champion=strong.path,
        champion_rule=evaluate.ChampionRule(tolerance=1.0),
    )
    # Then the champion got its sex column from the holdout: its metrics are its own
    c = result.manifest.champion
    assert c is not None
    assert c.metrics.values == pytest.approx(strong.manifest.metrics.values, abs=1e-6)
    # And the other way round: a champion without sex ignores the candidate's
    back = build(
        fitted["strong"], splits.test, TARGET, tmp_path / "s", name="s", champion=result.path
    )
    assert back.manifest.champion is not None
    assert back.manifest.champion.metrics.values == pytest.approx(
        result.manifest.metrics.values, abs=1e-6
    )


def test_a_champion_with_other_classes_is_compared_on_what_both_can_have(
    fitted: dict[str, Pipeline], splits: penguins.Splits, tmp_path: Path
) -> None:
    # Given a champion that knows two of the three species
    two = splits.train[splits.train[TARGET] != "Chinstrap"]
    held = splits.test[splits.test[TARGET] != "Chinstrap"]
    pair = penguins.make_pipeline(1.0).fit(two[penguins.FEATURES], two[TARGET])
    champion = build(pair, held, TARGET, tmp_path / "pair", name="pair").path
    # When the three-species candidate is compared on accuracy and macro F1
    rule = evaluate.ChampionRule(metrics=("accuracy", "macro_f1", "log_loss"))
    result = build(
        fitted["strong"],
        splits.test,
        TARGET,
        tmp_path / "new",
        name="new",
        champion=champion,
        champion_rule=rule,
    )
    # Then only accuracy is compared, and the card says why the others are not
    c = result.manifest.champion
    assert c is not None
    assert [k.metric for k in c.checks] == ["accuracy"]
    assert list(c.skipped) == ["macro_f1", "log_loss"]
    assert (
        "the champion's classes (Adelie, Gentoo) are not the candidate's" in c.skipped["macro_f1"]
    )
    assert "log_loss" not in c.metrics.values  # no probability for a species it does not know
    card = render_card(result.manifest)
    assert "- Not compared: macro_f1 depends on the classes, and the champion's classes" in card
    assert empty_fields(card) == []
    # And a champion gate with nothing both can have is refused
    with pytest.raises(PackagingError, match="no metric of the champion gate can be compared"):
        build(
            fitted["strong"],
            splits.test,
            TARGET,
            tmp_path / "none",
            name="none",
            champion=champion,
            champion_rule=evaluate.ChampionRule(metrics=("macro_f1",)),
        )


@pytest.fixture(scope="module")
def customers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Synthetic customers: a good and a poor regressor of spend, and a churn classifier."""
    train, holdout = synthetic_frame(600, seed=1), synthetic_frame(200, seed=2)
    root = tmp_path_factory.mktemp("customers")

    def regressor(alpha: float) -> Pipeline:
        return Pipeline([("pre", preprocessor()), ("m", Ridge(alpha=alpha))]).fit(
            train[FEATURES], train["spend"]
        )

    good, poor = regressor(1.0), regressor(3000.0)
    churn = Pipeline([("pre", preprocessor()), ("m", LogisticRegression())]).fit(
        train[FEATURES], train["churn"]
    )
    gate: evaluate.Thresholds = {"rmse": ("max", 1000.0), "r2": ("min", -10.0)}
    return {
        "holdout": holdout,
        "good": good,
        "poor": poor,
        "gate": gate,
        "poor_dir": build(poor, holdout, "spend", root / "poor", name="poor", gate=gate).path,
        "good_dir": build(good, holdout, "spend", root / "good", name="good", gate=gate).path,
        "churn_dir": build(churn, holdout, "churn", root / "churn", name="churn").path,
    }


def test_a_regressor_is_better_with_a_lower_rmse(customers: dict[str, Any], tmp_path: Path) -> None:
    holdout, gate = customers["holdout"], customers["gate"]
    # Given a gate whose primary metric is the RMSE, When the better regressor is packaged
    better = build(
        customers["good"],
        holdout,
        "spend",
        tmp_path / "better",
        name="better",
        gate=gate,
        champion=customers["poor_dir"],
    )
    # Then it passes with a lower RMSE than the champion's, lower being better
    c = better.manifest.champion
    assert c is not None
    (check,) = c.checks
    assert (check.metric, check.better, check.passed) == ("rmse", "lower", True)
    assert check.candidate < check.champion
    assert set(c.metrics.values) == {"mae", "rmse", "r2"}
    # And the poorer one is refused against the better champion, naming the RMSE
    with pytest.raises(GateFailed) as caught:
        build(
            customers["poor"],
            holdout,
            "spend",
            tmp_path / "worse",
            name="worse",
            gate=gate,
            champion=customers["good_dir"],
        )
    message = str(caught.value)
    assert f"rmse: the candidate's {evaluate.figure(check.champion)} is worse than " in message
    assert f"the champion's {evaluate.figure(check.candidate)}" in message
    assert "(lower is better)" in message


def test_a_champion_of_another_task_or_target_is_refused(
    customers: dict[str, Any], tmp_path: Path
) -> None:
    holdout = customers["holdout"]
    with pytest.raises(
        PackagingError,
        match=r"the champion churn \S+ is a classification model and the candidate a "
        r"regression one: they cannot be compared; package with --no-champion",
    ):
        build(
            customers["good"],
            holdout,
            "spend",
            tmp_path / "a",
            name="a",
            champion=customers["churn_dir"],
        )
    tier = Pipeline([("pre", preprocessor()), ("m", LogisticRegression())]).fit(
        holdout[FEATURES], holdout["tier"]
    )
    with pytest.raises(PackagingError, match="predicts 'churn' and the candidate 'tier'"):
        build(tier, holdout, "tier", tmp_path / "b", name="b", champion=customers["churn_dir"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- a champion that is not usable -------------------------------------------------------


def test_a_tampered_champion_is_a_clear_error(
    files: dict[str, Path],
    packaged: dict[str, Packaged],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the champion in the output directory, its graph altered after packaging
    out = copy_of(packaged["strong"], tmp_path / "m")
    served = out / ("model.onnx" if (out / "model.onnx").exists() else "model.joblib")
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served.write_bytes(bytes(data))
    before = snapshot(out)
    # When a candidate is packaged there
    code = cli(files, "strong", out)
    # Then it is an error (exit 2) that says why, and nothing changed
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"the champion {out} cannot be loaded: {served.name} does not match model.json" in err
    assert "--no-champion" in err and "Traceback" not in err
    assert snapshot(out) == before
    # and --no-champion replaces it
    assert cli(files, "strong", out, "--no-champion") == 0


def _with_file(directory: Path, name: str, text: str) -> Path:
    (directory / name).write_text(text)
    return directory / name


@pytest.mark.parametrize(
    ("champion", "message"),
    [
        ("absent", "the champion {d}/absent does not exist"),
        ("", "the champion directory {d} holds no packaged model (no model.json)"),
        ("x.joblib", "the champion {d}/x.joblib is neither a model directory nor a model.json"),
        (
            "model.json",
            "the champion {d} cannot be loaded: model.json does not match the manifest "
            "schema: name: required",
        ),
        ("not-json/model.json", "the champion {d}/not-json cannot be loaded: model.json does not"),
    ],
)
def test_a_champion_that_is_not_a_model_is_a_clear_error(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    champion: str,
    message: str,
) -> None:
    where = tmp_path / "champ"
    (where / "not-json").mkdir(parents=True)
    _with_file(where, "x.joblib", "")
    _with_file(where, "not-json/model.json", "{")
    if champion == "model.json":
        _with_file(where, "model.json", '{"format_version": 1}')
    champion = str(where / champion) if champion else str(where)
    code = cli(files, "strong", tmp_path / "new", "--champion", str(champion))
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.format(d=where) in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_champion_and_no_champion_do_not_go_together(
    files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli(files, "strong", tmp_path / "x", "--champion", "a", "--no-champion")
    assert caught.value.code == 2


# --- the gate file and the contract --------------------------------------------------------


def test_the_champion_table_is_read(tmp_path: Path) -> None:
    path = gate_file(
        tmp_path,
        "[thresholds]\nrmse = { max = 9 }\n\n[champion]\nmetrics = ['rmse', 'mae']\n"
        "tolerance = { mae = 0.5 }\n",
    )
    rule = evaluate.read_champion(path)
    assert rule.compared("r2") == ("rmse", "mae")
    assert (rule.tolerance_for("rmse"), rule.tolerance_for("mae")) == (0.0, 0.5)
    assert evaluate.read_gate(path) == {"rmse": ("max", 9.0)}
    plain = gate_file(tmp_path, "[thresholds]\nrmse = { max = 9 }\n")
    assert evaluate.read_champion(plain) == evaluate.ChampionRule()
    assert evaluate.ChampionRule().compared("rmse") == ("rmse",)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[champion]\nmetric = ['accuracy']\n", "unknown key 'metric'"),
        ("[champion]\nmetrics = 'accuracy'\n", "metrics must be a non-empty list"),
        ("[champion]\nmetrics = []\n", "metrics must be a non-empty list"),
        ("[champion]\nmetrics = ['acc']\n", "metrics: unknown metric 'acc'"),
        ("[champion]\nmetrics = ['mae', 'mae']\n", "names a metric twice"),
        ("[champion]\ntolerance = -0.1\n", "tolerance must be a number of 0 or more"),
        ("[champion]\ntolerance = 'small'\n", "tolerance must be a number"),
        ("[champion]\ntolerance = { acc = 0.1 }\n", "tolerance: unknown metric 'acc'"),
        ("[champion]\ntolerance = { mae = true }\n", "tolerance.mae must be a number"),
        ("champion = 3\n", "[champion] must be a table"),
        ("[champions]\nmetrics = ['mae']\n", "unknown table [champions]"),
    ],
)
def test_a_malformed_champion_table_is_refused_by_both_readers(
    tmp_path: Path, table: str, message: str
) -> None:
    path = gate_file(tmp_path, table + "\n[thresholds]\nmae = { max = 9 }\n")
    for read in (evaluate.read_gate, evaluate.read_champion):
        with pytest.raises(PackagingError) as caught:
            read(path)
        assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_champion_rule_that_does_not_fit_the_candidate_is_refused(
    customers: dict[str, Any], tmp_path: Path
) -> None:
    def package(rule: evaluate.ChampionRule) -> None:
        build(
            customers["good"],
            customers["holdout"],
            "spend",
            tmp_path / "x",
            name="x",
            champion=customers["poor_dir"],
            champion_rule=rule,
        )

    with pytest.raises(PackagingError, match="compares 'accuracy', not a regression metric"):
        package(evaluate.ChampionRule(metrics=("accuracy",)))
    with pytest.raises(PackagingError, match=r"tolerance\.mae: mae is not compared"):
        package(evaluate.ChampionRule(tolerances={"mae": 1.0}))  # compares r2 only
    assert not (tmp_path / "x").exists()


def test_every_metric_has_a_direction() -> None:
    every = {*evaluate.CLASSIFICATION_METRICS, *evaluate.REGRESSION_METRICS}
    assert set(evaluate.BETTER) == every
    lower = {m for m, better in evaluate.BETTER.items() if better == "lower"}
    assert lower == {"log_loss", "mae", "rmse"}


def test_older_manifests_without_a_champion_still_read() -> None:
    data = json.loads((PENGUINS_DIR / "model.json").read_text())
    data.pop("champion", None)
    assert parse_manifest(data).champion is None
    schema = json_schema()
    assert "champion" in schema["properties"] and "champion" not in schema["required"]


def test_a_recorded_champion_is_checked_like_the_rest_of_the_manifest(
    packaged: dict[str, Packaged],
    fitted: dict[str, Pipeline],
    splits: penguins.Splits,
    tmp_path: Path,
) -> None:
    result = build(
        fitted["strong"],
        splits.test,
        TARGET,
        tmp_path / "x",
        name="x",
        champion=packaged["weak"].path,
    )
    data = json.loads((result.path / "model.json").read_text())
    data["champion"]["checks"][0]["better"] = "more"
    with pytest.raises(ValueError, match=r"champion\.checks\.0\.better: expected one of"):
        parse_manifest(data)
    del data["champion"]["checks"][0]["better"]
    with pytest.raises(ValueError, match=r"champion\.checks\.0\.better: required"):
        parse_manifest(data)


# --- make ----------------------------------------------------------------------------------


def _plan(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "package", "MODEL=m", "DATA=h", "TARGET=y", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_package_passes_the_champion_choice() -> None:
    assert "--no-champion" in _plan("CHAMPION=none") and "--champion " not in _plan("CHAMPION=none")
    named = _plan("CHAMPION=models/old/model.json")
    assert '--champion "models/old/model.json"' in named and "--no-champion" not in named
    default = _plan()
    assert "--champion" not in default and "--no-champion" not in default
