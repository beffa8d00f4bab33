"""The one scorer: predict_proba's numbers, and the same bits for a row in any batch or memory layout, any recipe."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from dse_platform.model import recipes, scoring

NAMES = [f"f{i}" for i in range(20)]


def _data(seed: int = 0, rows: int = 1000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, len(NAMES))) * rng.uniform(0.001, 100, len(NAMES)) + rng.normal(0, 5, len(NAMES))
    # built column by column: pandas then holds it Fortran-ordered, where a plain row sum rounds differently
    frame = pd.DataFrame({name: values[:, i] for i, name in enumerate(NAMES)})
    y = (values[:, 0] / values[:, 0].std() + rng.normal(size=rows) > 0).astype(int)
    return frame, y


@pytest.fixture(scope="module")
def fitted() -> tuple[Pipeline, pd.DataFrame]:
    X, y = _data()
    model = Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression(C=0.1, max_iter=500))]).fit(X, y)
    return model, _data(seed=1)[0]


def test_probabilities_equal_predict_proba(fitted) -> None:
    model, X = fitted
    p = scoring.probabilities(model, X)
    assert p.shape == (len(X),) and ((p > 0) & (p < 1)).all()
    assert np.abs(p - model.predict_proba(X)[:, 1]).max() <= 1e-12


def test_a_row_scores_to_the_same_bits_alone_and_in_a_batch_of_1000(fitted) -> None:
    model, X = fitted
    batch = scoring.probabilities(model, X)
    sample = range(0, len(X), 7)
    alone = np.array([scoring.probabilities(model, X.iloc[[i]])[0] for i in sample])
    np.testing.assert_array_equal(alone, batch[sample])
    row_major = pd.DataFrame(np.ascontiguousarray(X.to_numpy()), columns=NAMES)
    np.testing.assert_array_equal(scoring.probabilities(model, row_major), batch)


def test_columns_are_taken_by_name(fitted) -> None:
    model, X = fitted
    np.testing.assert_array_equal(scoring.probabilities(model, X[NAMES[::-1]]), scoring.probabilities(model, X))


def test_other_pipelines_are_scored_by_predict_proba() -> None:
    X, y = _data(rows=200)
    tree = Pipeline([("scale", StandardScaler()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))])
    tree.fit(X, y)
    np.testing.assert_array_equal(scoring.probabilities(tree, X), tree.predict_proba(X)[:, 1])


@pytest.fixture(scope="module", params=sorted(recipes.KINDS))
def recipe_model(request) -> tuple[Pipeline, pd.DataFrame]:
    X, y = _data(rows=3000)
    return recipes.get(request.param).fit(X, y), _data(seed=2, rows=1500)[0]


def test_every_recipe_scores_the_same_bits_in_any_chunking(recipe_model) -> None:
    model, X = recipe_model
    whole = scoring.probabilities(model, X)
    assert len(np.unique(whole)) > 100, "the model must tell rows apart for the test to mean anything"
    cuts = [0, 1, 8, 9, 500, 777, len(X)]
    chunked = np.concatenate([scoring.probabilities(model, X.iloc[a:b]) for a, b in itertools.pairwise(cuts)])
    np.testing.assert_array_equal(chunked, whole)
    alone = np.array([scoring.probabilities(model, X.iloc[[i]])[0] for i in range(0, len(X), 37)])
    np.testing.assert_array_equal(alone, whole[::37])
    row_major = pd.DataFrame(np.ascontiguousarray(X.to_numpy()), columns=NAMES)
    np.testing.assert_array_equal(scoring.probabilities(model, row_major), whole)
    np.testing.assert_array_equal(scoring.probabilities(model, X[NAMES[::-1]]), whole)
