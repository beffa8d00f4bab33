"""Recipes: named, rebuilt exactly from logged parameters, deterministic, and saved/loaded by skops as MLflow does."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import skops.io
from mlflow.models import infer_signature
from skops.io.exceptions import UntrustedTypesFoundException

import mlflow
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.model import recipes


def _data(rows: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(rows, 6)), columns=[f"f{i}" for i in range(6)])
    y = (X["f0"] + 0.5 * X["f1"] * X["f2"] + rng.normal(size=rows) > 0).astype(int).to_numpy()
    return X, y


def test_recipes_are_named_and_rebuilt_from_their_logged_parameters():
    settings = Settings(_env_file=None, train_c=0.25)
    logreg = recipes.get("logreg", settings)
    assert logreg.params["C"] == 0.25 and logreg.pipeline().named_steps["logreg"].C == 0.25
    assert recipes.get("logreg").params["C"] == recipes.KINDS["logreg"].defaults["C"]
    for recipe in (logreg, recipes.get("hgb")):
        logged = recipe.logged_params()
        assert json.loads(logged["recipe_params"]) == recipe.params
        assert recipes.from_logged(logged) == recipe
        rebuilt = recipes.from_logged(logged).pipeline().get_params()
        assert {k: v for k, v in recipe.pipeline().get_params().items() if "__" in k} == \
            {k: v for k, v in rebuilt.items() if "__" in k}
    hgb = recipes.get("hgb").pipeline().named_steps["hgb"]
    assert hgb.early_stopping is False and hgb.random_state == 0


def test_unknown_recipes_and_runs_without_one_are_clear_errors():
    with pytest.raises(PlatformError, match="unknown model recipe 'forest'") as err:
        recipes.get("forest")
    assert "hgb" in err.value.fix and "logreg" in err.value.fix
    with pytest.raises(PlatformError, match="no recipe parameters"):
        recipes.from_logged({"C": "0.1"})


@pytest.mark.parametrize("name", sorted(recipes.KINDS))
def test_the_same_rows_give_the_same_model_whatever_the_thread_limit(name):
    X, y = _data()
    recipe = recipes.get(name)
    a, b = recipe.fit(X, y), recipe.pipeline().fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_hgb_loads_through_skops_only_with_its_trusted_types(tmp_path):
    X, y = _data()
    recipe = recipes.get("hgb")
    model = recipe.fit(X, y)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    assert sorted(skops.io.get_untrusted_types(file=path)) == sorted(recipe.kind.trusted_types)
    with pytest.raises(UntrustedTypesFoundException):
        skops.io.load(path)
    loaded = skops.io.load(path, trusted=list(recipe.kind.trusted_types))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("name", sorted(recipes.KINDS))
def test_every_recipe_round_trips_through_the_mlflow_sklearn_flavour(name, tmp_path):
    X, y = _data(rows=1500)
    recipe = recipes.get(name)
    model = recipe.fit(X, y)
    mlflow.sklearn.save_model(model, str(tmp_path / name), serialization_format="skops", pip_requirements=[],
                              skops_trusted_types=list(recipe.kind.trusted_types) or None,
                              signature=infer_signature(X.head(3), model.predict_proba(X.head(3))))
    loaded = mlflow.sklearn.load_model(str(tmp_path / name))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
