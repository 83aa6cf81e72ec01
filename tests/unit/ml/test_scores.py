"""Scores on hand-computed examples: classification, regression, information coefficient."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sapphire.ml.scores import (
    classification_scores,
    ic_series,
    information_coefficient,
    predicted_class,
    regression_scores,
    scoring_value,
)


def test_ternary_scores_from_the_traded_score():
    y = [-1, 0, 1, 1]
    score = [-0.8, 0.1, 0.7, -0.2]  # nearest classes: -1, 0, 1, 0
    out = classification_scores(y, score)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert out["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)  # per class: 1, 2/3, 2/3
    # up vs down on the rows labelled -1 / +1: both ups score above the down
    assert out["roc_auc"] == pytest.approx(1.0)
    assert "log_loss" not in out


def test_proba_decides_the_class_and_gives_log_loss():
    y = np.array([-1.0, 0.0, 1.0])
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    score = proba[:, 2] - proba[:, 0]
    out = classification_scores(y, score, proba=proba, classes=[-1, 0, 1])
    assert out["accuracy"] == 1.0
    assert out["log_loss"] == pytest.approx(-(math.log(0.6) + math.log(0.5) + math.log(0.7)) / 3)


def test_binary_meta_labels_and_weights():
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.2, 0.6, 0.7, 0.4, 0.9])  # predicted 0, 1, 1, 0, 1
    out = classification_scores(y, p1)
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["roc_auc"] == pytest.approx(5 / 6)  # 5 of 6 (pos, neg) pairs ordered
    w = np.array([1.0, 0.0, 1.0, 0.0, 1.0])  # drop the two mistakes
    assert classification_scores(y, p1, sample_weight=w)["accuracy"] == pytest.approx(1.0)


def test_predicted_class_rule():
    assert predicted_class([0.49, 0.51], [0, 1]).tolist() == [0, 1]
    assert predicted_class([-0.1, 0.1], [-1, 1]).tolist() == [-1, 1]
    assert predicted_class([-0.6, 0.4, 0.6], [-1, 0, 1]).tolist() == [-1, 0, 1]


def test_regression_scores():
    out = regression_scores([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert out["mse"] == pytest.approx(4 / 3)
    assert out["mae"] == pytest.approx(2 / 3)
    assert out["r2"] == pytest.approx(1 - 4 / 2)  # SSE 4, SST 2


def test_information_coefficient_pearson_vs_rank():
    x = np.linspace(0.1, 3.0, 50)
    target = np.exp(3 * x)  # monotone but far from linear
    out = information_coefficient(x, target)
    assert out["rank_ic"] == pytest.approx(1.0)
    assert 0.5 < out["ic"] < 0.95
    noisy = np.where(np.arange(50) % 7 == 0, np.nan, x)  # NaN pairs are dropped
    assert information_coefficient(noisy, target)["rank_ic"] == pytest.approx(1.0)


def test_ic_per_period():
    day = 86_400 * 10**9
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    times = np.concatenate([start + d * day + np.arange(10) * 60 * 10**9 for d in range(3)])
    pred = np.tile(np.arange(10.0), 3)
    target = np.concatenate([np.arange(10.0), -np.arange(10.0), np.arange(10.0) ** 2])
    series = ic_series(pred, target, times)
    assert series.tolist() == pytest.approx([1.0, -1.0, 1.0])
    assert series.index[1] == pd.Timestamp("2024-01-02", tz="UTC")
    out = information_coefficient(pred, target, times=times)
    assert out["n_periods"] == 3
    assert out["ic_mean"] == pytest.approx(1 / 3)
    std = np.std([1, -1, 1], ddof=1)
    assert out["ic_std"] == pytest.approx(std)
    assert out["icir"] == pytest.approx((1 / 3) / std)
    assert out["ic_tstat"] == pytest.approx((1 / 3) / std * math.sqrt(3))
    five = ic_series(pred, target, times, period="5min")
    assert five.tolist() == pytest.approx([1.0, 1.0, -1.0, -1.0, 1.0, 1.0])
    assert len(ic_series(pred, target, times, period="2min")) == 0  # < 3 pairs per period


def test_scoring_value_is_higher_is_better():
    y = np.array([0.0, 1.0, 1.0])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    ll = classification_scores(y, proba[:, 1], proba=proba)["log_loss"]
    assert scoring_value("neg_log_loss", y, proba[:, 1], proba=proba) == pytest.approx(-ll)
    assert scoring_value("neg_mse", [1.0, 2.0], [1.0, 4.0]) == pytest.approx(-2.0)
    assert scoring_value("rank_ic", [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="needs proba"):
        scoring_value("neg_log_loss", y, proba[:, 1])
    with pytest.raises(ValueError, match="scoring='sharpe' is unknown"):
        scoring_value("sharpe", y, y)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: classification_scores([0, 1], [0.5]), "score holds 1 values, expected 2"),
        (lambda: classification_scores([0, 1], [0.5, np.nan]), r"score\[1\] = nan"),
        (lambda: classification_scores([0, 2], [0.5, 1], classes=[0, 1]), r"classes \[2.\]"),
        (lambda: classification_scores([0, 1], [0, 1], proba=np.ones((2, 3))), "proba has shape"),
        (lambda: regression_scores([1.0, np.inf], [1.0, 2.0]), r"y_true\[1\] = inf"),
        (lambda: ic_series([1.0], [1.0], [0, 1]), "times holds 2 values, expected 1"),
        (lambda: ic_series([1.0], [1.0], [0], period="banana"), "period='banana'"),
    ],
)
def test_bad_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
