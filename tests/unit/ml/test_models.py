"""Model: LightGBM / XGBoost / scikit-learn behind one interface, save/load, OOD gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sapphire.ml.models import Model, ModelSpec, make_model

SPECS = [
    "lightgbm:n_estimators=40",
    "xgboost:n_estimators=40,max_depth=3",
    "sklearn:LogisticRegression",
    "sklearn:RandomForestClassifier:n_estimators=20,max_depth=4",
]


def _data(n: int = 1500, seed: int = 0, classes=(-1.0, 0.0, 1.0)):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"f{i}" for i in range(6)])
    X.loc[rng.random(n) < 0.05, "f5"] = np.nan  # a feature with missing values
    signal = X["f0"] - 0.5 * X["f1"] + 0.3 * rng.normal(size=n)
    if len(classes) == 3:
        y = np.where(signal > 0.5, 1.0, np.where(signal < -0.5, -1.0, 0.0))
    else:
        y = np.where(signal > 0, classes[1], classes[0])
    return X, y, signal.to_numpy()


@pytest.mark.parametrize("spec", SPECS)
def test_classifiers_learn_and_score_is_expected_class(spec):
    X, y, _ = _data()
    model = make_model(spec, "classification").fit(X.iloc[:1000], y[:1000])
    assert model.classes.tolist() == [-1.0, 0.0, 1.0]
    proba = model.predict_proba(X.iloc[1000:])
    assert proba.shape == (500, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    score = model.predict(X.iloc[1000:])
    assert np.allclose(score, proba[:, 2] - proba[:, 0], atol=1e-12)
    # out-of-sample skill on the planted signal
    assert np.corrcoef(score, y[1000:])[0, 1] > 0.6


@pytest.mark.parametrize("spec", ["lightgbm:n_estimators=30", "xgboost:n_estimators=30"])
def test_binary_meta_score_is_p1(spec):
    X, y, _ = _data(classes=(0.0, 1.0))
    model = make_model(spec, "classification").fit(X, y)
    assert model.classes.tolist() == [0.0, 1.0]
    p = model.predict_proba(X)
    assert np.array_equal(model.predict(X), p[:, 1])
    assert ((model.predict(X) > 0.5) == (y == 1)).mean() > 0.85


@pytest.mark.parametrize(
    "spec", ["lightgbm:n_estimators=40", "xgboost:n_estimators=40", "sklearn:Ridge"]
)
def test_regression(spec):
    X, _, signal = _data()
    model = make_model(spec, "regression").fit(X.iloc[:1000], signal[:1000])
    pred = model.predict(X.iloc[1000:])
    assert np.corrcoef(pred, signal[1000:])[0, 1] > 0.85
    with pytest.raises(ValueError, match="classification"):
        model.predict_proba(X)


@pytest.mark.parametrize("spec", [*SPECS, "sklearn:Ridge"])
def test_save_load_bit_identical_and_hash_checked(spec, tmp_path):
    X, y, signal = _data(600)
    task = "regression" if spec == "sklearn:Ridge" else "classification"
    model = make_model(spec, task, seed=3).fit(X, signal if task == "regression" else y)
    path = tmp_path / "m" / "model.pkl"
    digest = model.save(path)
    loaded = Model.load(path, sha256=digest)
    assert loaded.features == model.features
    assert loaded.spec == model.spec and loaded.task == task
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert np.array_equal(loaded.ood(X), model.ood(X))
    if task == "classification":
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="differs from expected"):
        Model.load(path, sha256=digest)


@pytest.mark.parametrize("spec", SPECS)
def test_deterministic_with_seed(spec):
    X, y, _ = _data(800)
    a = make_model(spec, "classification", seed=7).fit(X, y).predict(X)
    b = make_model(spec, "classification", seed=7).fit(X, y).predict(X)
    assert np.array_equal(a, b)


def test_seed_matters_for_randomised_models():
    X, y, _ = _data(800)
    spec = "lightgbm:n_estimators=30,subsample=0.5,subsample_freq=1,colsample_bytree=0.5"
    a = make_model(spec, "classification", seed=1).fit(X, y).predict(X)
    b = make_model(spec, "classification", seed=2).fit(X, y).predict(X)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("spec", "exact"),
    [
        ("lightgbm:n_estimators=40", True),
        ("xgboost:n_estimators=40", True),
        ("sklearn:LogisticRegression", False),  # BLAS blocks rows: equal to ~1 ulp
    ],
)
def test_predict_row_matches_predict(spec, exact):
    X, y, _ = _data(800)
    model = make_model(spec, "classification").fit(X, y)
    A = X.to_numpy()
    rows = np.array([model.predict_row(a) for a in A[:200]])
    batch = model.predict(A[:200])
    if exact:
        assert np.array_equal(rows, batch)
    else:
        np.testing.assert_allclose(rows, batch, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"expected \(6,\)"):
        model.predict_row(A[0, :5])


@pytest.mark.parametrize(
    ("task", "classes"),
    [("classification", (-1.0, 1.0)), ("classification", (-1.0, 0.0, 1.0)), ("regression", ())],
)
def test_lightgbm_single_row_fast_path_gives_the_batch_values(tmp_path, task, classes):
    # live inference goes through LightGBM's single-row C path on one thread: the same
    # values as the batch predict, for binary, multiclass and regression models, after a
    # save/load, a pickle round trip and a refit
    import pickle

    X, y, signal = _data(800, classes=classes or (-1.0, 0.0, 1.0))
    target = signal if task == "regression" else y
    model = make_model("lightgbm:n_estimators=40", task).fit(X, target)
    A = X.to_numpy()
    for m in (model, Model.load(tmp_path / "m.pkl", model.save(tmp_path / "m.pkl"))):
        assert np.array_equal([m.predict_row(a) for a in A[:100]], m.predict(A[:100]))
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal([again.predict_row(a) for a in A[:50]], model.predict(A[:50]))
    model.fit(X.iloc[:400], target[:400])  # refitted: the row path follows the new trees
    assert np.array_equal([model.predict_row(a) for a in A[:50]], model.predict(A[:50]))


def test_preprocessing_is_fitted_on_training_rows_only():
    X, y, _ = _data(1000)
    shifted = X.copy()
    shifted.iloc[500:] += 100.0  # test rows far away: must not move the training scaler
    model = make_model("sklearn:LogisticRegression", "classification").fit(
        shifted.iloc[:500], y[:500]
    )
    scaler = model.estimator.named_steps["scale"]
    assert np.allclose(scaler.mean_, np.nanmean(X.iloc[:500].to_numpy(), axis=0), atol=0.05)
    imputer = model.estimator.named_steps["impute"]
    assert imputer.statistics_[5] == pytest.approx(np.nanmedian(X["f5"].iloc[:500]))


def test_ood_gate():
    X, y, _ = _data(1000)
    X["flag"] = (np.arange(1000) % 10 == 0).astype(float)  # IQR 0: the std stands in
    X["const"] = 1.0  # constant in training: never checked
    model = make_model("lightgbm:n_estimators=10", "classification").fit(X, y)
    probe = X.iloc[:6].copy()
    probe.iloc[0, 0] = 50.0  # robust z of about 50 / 1 > 10
    probe.iloc[1, 1] = np.nan  # f1 never NaN in training
    probe.iloc[2, 5] = np.nan  # f5 was NaN in training: fine
    probe.iloc[3, 6] = 1.0  # a rare but seen flag value
    probe.iloc[4, 7] = 5.0  # a constant feature moved: not checked
    probe.iloc[5, 2] = np.inf
    assert model.ood(probe).tolist() == [True, True, False, False, False, True]
    assert model.ood_row(probe.to_numpy()[0]) and not model.ood_row(probe.to_numpy()[2])
    model.ood_threshold = 100.0
    assert not model.ood(probe)[0]
    assert model.ood(X).mean() < 0.01  # training rows are in distribution


def test_dataframe_columns_are_aligned_by_name():
    X, y, _ = _data(600)
    model = make_model("lightgbm:n_estimators=20", "classification").fit(X, y)
    reordered = X[list(reversed(X.columns))].assign(extra=1.0)
    assert np.array_equal(model.predict(reordered), model.predict(X))
    with pytest.raises(ValueError, match=r"lacks feature columns \['f0'\]"):
        model.predict(X.drop(columns="f0"))


def test_sample_weight_changes_the_fit():
    X, y, _ = _data(800)
    w = np.where(np.arange(800) < 400, 1.0, 0.01)
    a = make_model("lightgbm:n_estimators=20", "classification").fit(X, y).predict(X)
    b = make_model("lightgbm:n_estimators=20", "classification").fit(X, y, w).predict(X)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="sample_weight"):
        make_model("lightgbm", "classification").fit(X, y, -w)


def test_spec_parse_round_trip():
    spec = ModelSpec.parse("xgboost:n_estimators=200,max_depth=4,learning_rate=0.05")
    assert spec.kind == "xgboost"
    assert spec.params == {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.05}
    assert ModelSpec.from_mapping(spec.to_mapping()) == spec
    assert ModelSpec.parse(str(spec)) == spec
    mlp = ModelSpec.parse("sklearn:MLPClassifier:hidden_layer_sizes=[16,8],alpha=0.1")
    assert mlp.kind == "sklearn:MLPClassifier"
    assert mlp.params == {"hidden_layer_sizes": [16, 8], "alpha": 0.1}
    assert ModelSpec.parse("lightgbm") == ModelSpec()
    odd = ModelSpec("sklearn:RandomForestClassifier", {"max_depth": None, "bootstrap": False})
    assert ModelSpec.parse(str(odd)) == odd
    assert ModelSpec.parse("xgboost:learning_rate=1e-3").params == {"learning_rate": 0.001}
    assert ModelSpec.parse("lightgbm:min_data_in_leaf=5").params == {"min_data_in_leaf": 5}
    # predict_proba that depends on a parameter is probed with the parameters given
    assert make_model("sklearn:SVC:probability=true", "classification").spec.kind == "sklearn:SVC"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ModelSpec("catboost"), "'catboost' is unknown"),
        (lambda: ModelSpec("sklearn:NoSuchModel"), "'NoSuchModel' is not a scikit-learn"),
        (lambda: ModelSpec("lightgbm", {"n_trees_typo": 3}), "unknown parameter 'n_trees_typo'"),
        (lambda: ModelSpec.parse("xgboost:max_depth"), "'max_depth' is not name=value"),
        (lambda: ModelSpec.from_mapping({"kind": "lightgbm", "x": 1}), r"unknown keys \['x'\]"),
        (lambda: make_model("lightgbm", "ranking"), "task='ranking'"),
        (lambda: make_model("sklearn:Ridge", "classification"), "cannot do task"),
        (lambda: make_model("sklearn:LinearSVC", "classification"), "no predict_proba"),
    ],
)
def test_bad_specs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_training_data_is_named():
    X, y, _ = _data(100)
    model = make_model("lightgbm", "classification")
    with pytest.raises(ValueError, match="not fitted"):
        model.predict(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        model.fit(X, np.ones(100))
    bad = X.copy()
    bad.iloc[7, 2] = np.inf
    with pytest.raises(ValueError, match="'f2' row 7 is inf"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match=r"y\[3\] = nan"):
        model.fit(X, np.where(np.arange(100) == 3, np.nan, y))
    with pytest.raises(ValueError, match="DataFrame"):
        model.fit(X.to_numpy(), y)
    model.fit(X, y)
    with pytest.raises(ValueError, match=r"expected \(rows, 6\)"):
        model.predict(X.to_numpy()[:, :4])
