"""Tables as files: CSV and Parquet read by one encoding rule, every bad input a one-line error naming the
column, and the same rule from the CLI, the saved model and the MLflow model."""

import numpy as np
import pandas as pd
import pytest

from anomalyvae import AnomalyVAE
from anomalyvae.errors import AnomalyVAEError, DataError, InvalidInput
from anomalyvae.data.tables import MAX_CATEGORIES, TableEncoder, read_table
from anomalyvae.pipeline.tables import fit_table, score_table
from conftest import run_cli


def _frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a": a, "b": a + rng.normal(scale=0.1, size=n),
                         "colour": rng.choice(["red", "green", "blue"], size=n), "flag": rng.random(n) > 0.5,
                         "c": rng.normal(size=n) * 50})


@pytest.fixture(scope="module")
def model():
    return fit_table(_frame(), exclude=["id"], epochs=3, random_state=0, threads=1)


# -- reading files ------------------------------------------------------------------------------------------
def test_csv_and_parquet_read_the_same(tmp_path):
    f = _frame(20)
    f.to_csv(tmp_path / "t.csv", index=False)
    f.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), read_table(tmp_path / "t.parquet"))


def test_a_csv_with_a_header_only_is_one_line_error(tmp_path):
    (tmp_path / "h.csv").write_text("a,b,c\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        read_table(tmp_path / "h.csv")


def test_an_empty_file_and_an_unknown_suffix_are_errors(tmp_path):
    (tmp_path / "e.csv").write_text("")
    (tmp_path / "t.xlsx").write_text("a\n1\n")
    with pytest.raises(DataError, match="is empty"):
        read_table(tmp_path / "e.csv")
    with pytest.raises(DataError, match="use .csv or .parquet"):
        read_table(tmp_path / "t.xlsx")


# -- the encoding rule ------------------------------------------------------------------------------------
def test_numbers_stay_and_low_cardinality_text_is_one_hot():
    enc = TableEncoder.fit(_frame(), exclude=["id"])
    assert enc.feature_names() == ["a", "b", "colour=blue", "colour=green", "colour=red", "flag", "c"]
    X = enc.transform(_frame(5))
    assert (X[["colour=blue", "colour=green", "colour=red"]].sum(axis=1) == 1).all()


def test_a_category_unseen_in_training_sets_none_of_its_columns():
    enc = TableEncoder.fit(_frame(), exclude=["id"])
    f = _frame(3)
    f.loc[0, "colour"] = "purple"
    X = enc.transform(f)
    assert X.loc[0, ["colour=blue", "colour=green", "colour=red"]].sum() == 0


def test_text_with_many_values_is_an_error_naming_the_column_and_the_flag():
    with pytest.raises(InvalidInput, match=r"column 'id' is text with 200 distinct values .*--exclude-columns id"):
        TableEncoder.fit(_frame())
    assert MAX_CATEGORIES == 20


def test_exclude_columns_naming_no_column_is_an_error():
    with pytest.raises(InvalidInput, match="'nope', which the table does not have"):
        TableEncoder.fit(_frame(), exclude=["nope"])


@pytest.mark.parametrize("bad, words", [(np.nan, "column 'a' has an empty cell or NaN in data row 2 (line 3)"),
                                        (np.inf, "column 'a' has an infinite value in data row 2 (line 3)")])
def test_nan_or_infinity_is_an_error_naming_the_column_and_row(bad, words):
    enc = TableEncoder.fit(_frame(), exclude=["id"])
    f = _frame(4)
    f.loc[1, "a"] = bad
    with pytest.raises(InvalidInput) as e:
        enc.transform(f)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_column_missing_at_scoring_is_an_error_naming_it(model):
    with pytest.raises(InvalidInput, match="column 'colour' is missing"):
        score_table(model, _frame(4).drop(columns="colour"))


def test_text_where_numbers_were_trained_is_an_error_naming_the_column(model):
    f = _frame(4).astype({"c": object})
    f.loc[2, "c"] = "n/a"
    with pytest.raises(InvalidInput, match="column 'c' holds text .*'n/a'"):
        score_table(model, f)


def test_columns_are_matched_by_name_in_any_order_and_extra_ones_ignored(model):
    f = _frame(6, seed=1)
    shuffled = f[["c", "flag", "colour", "b", "a"]].assign(extra=1.0)
    pd.testing.assert_frame_equal(score_table(model, shuffled), score_table(model, f))


def test_a_constant_column_is_kept_and_a_row_leaving_it_is_flagged_and_blamed():
    f = _frame().assign(unit=5.0)
    det = fit_table(f, exclude=["id"], epochs=3, random_state=0, threads=1)
    g = _frame(5, seed=2).assign(unit=5.0)
    g.loc[4, "unit"] = 9.0
    out = score_table(det, g)
    assert out.loc[4, "is_anomaly"] and out[det.score_].idxmax() == 4
    assert out.loc[4, "top_features"].startswith("unit (")


# -- the saved model and MLflow ----------------------------------------------------------------------------
def test_the_model_directory_keeps_the_encoding(model, tmp_path):
    loaded = AnomalyVAE.load(model.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(score_table(loaded, _frame(8, seed=3)), score_table(model, _frame(8, seed=3)))


def test_the_mlflow_model_takes_the_training_columns_by_name_and_refuses_a_missing_one(model, tmp_path):
    import mlflow

    from anomalyvae.tracking.mlflow_model import log_model

    model.save(tmp_path / "m")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # an experiment of this store: an earlier in-process CLI test leaves its own store's experiment active
    mlflow.set_experiment("tables")
    try:
        with mlflow.start_run():
            info = log_model(tmp_path / "m", example=_frame(2)[model.table_.columns])
        assert info.name == "table-rows-mlp"
        pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    f = _frame(6, seed=4)
    got = pyfunc.predict(f[["c", "b", "a", "flag", "colour"]])
    want = score_table(model, f)
    np.testing.assert_allclose(got[model.score_], want[model.score_], rtol=1e-6)
    with pytest.raises(Exception, match="colour"):
        pyfunc.predict(f[["c", "b", "a", "flag"]])


# -- the CLI ------------------------------------------------------------------------------------------------
def test_train_score_and_evaluate_a_table_from_the_cli(tmp_path):
    f = _frame(300)
    f.iloc[:200].to_csv(tmp_path / "normal.csv", index=False)
    test = f.iloc[200:].assign(is_anomaly=0)
    test.iloc[:10, test.columns.get_loc("c")] += 400.0
    test.iloc[:10, test.columns.get_loc("is_anomaly")] = 1
    test.to_csv(tmp_path / "test.csv", index=False)
    r = run_cli("train", "--table", "normal.csv", "--exclude-columns", "id", "--epochs", "5", "--out", "m",
                "--no-tracking", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("score", "test.csv", "--model", "m", "--out", "scores.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["row", "combined", "is_anomaly", "top_features"] and len(scores) == 100
    assert scores["is_anomaly"].iloc[:10].all()
    assert all(t.startswith("c (") for t in scores["top_features"].iloc[:10])
    r = run_cli("evaluate", "--model", "m", "--table", "test.csv", "--label-column", "is_anomaly", "--no-tracking",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "AUROC 1.0000" in r.stdout


@pytest.mark.parametrize("args, words", [
    (["train", "--table", "header.csv", "--no-tracking"], "error: table header.csv has a header but no rows"),
    (["train", "--table", "ids.csv", "--no-tracking"], "error: column 'id' is text with 200 distinct values"),
    (["train", "--table", "ids.csv", "--dataset", "mnist", "--no-tracking"], "--dataset is for images"),
    (["evaluate", "--model", "m", "--table", "ids.csv"], "--table and --label-column go together"),
])
def test_bad_table_input_is_one_line_from_the_cli(tmp_path, args, words):
    (tmp_path / "header.csv").write_text("a,b\n")
    _frame().to_csv(tmp_path / "ids.csv", index=False)
    (tmp_path / "m").mkdir()
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode != 0 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
