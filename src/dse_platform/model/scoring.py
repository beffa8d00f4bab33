"""Scoring: P(up) of feature rows with a served model, bit for bit the same in any batch.

The streaming job, the walk-forward folds and the promotion gate all score here, so
a model's probabilities are the same numbers wherever it is judged or served.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits


def _scaled_logistic(model: Pipeline) -> tuple[StandardScaler, LogisticRegression] | None:
    """The (scaler, binary logistic regression) of a two-step pipeline of exactly those, else None."""
    steps = [step for _, step in model.steps]
    if len(steps) != 2:
        return None
    scaler, logreg = steps
    if not (isinstance(scaler, StandardScaler) and isinstance(logreg, LogisticRegression)
            and logreg.coef_.shape[0] == 1):
        return None
    return scaler, logreg


def probabilities(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """P(up) of each row; for a scaled logistic regression, each row's logit summed in a fixed order.

    A BLAS matrix product (or NumPy's pairwise sum over a strided array) may round a
    row's logit differently depending on the rows and memory layout around it. Here
    the logit is built feature by feature with element-wise operations only, so a
    row scores to the same bits in any batch, which makes a replayed batch write
    identical predictions. Other pipelines fall back to ``predict_proba``, with the
    columns taken by name; histogram gradient boosting is batch-independent there: a
    row's raw score is its leaves' values added tree by tree for that row alone, then
    passed through the logistic function element-wise (the unit tests check both
    recipes chunk by chunk). It runs on one native thread: rows need no company, and
    on a busy two-core machine OpenMP's spinning threads scored 2-6x slower.
    """
    parts = _scaled_logistic(model)
    if parts is None:
        names = getattr(model, "feature_names_in_", None)
        with threadpool_limits(limits=1):
            return model.predict_proba(X if names is None else X[list(names)])[:, 1]
    scaler, logreg = parts
    names = getattr(scaler, "feature_names_in_", None)
    z = (X if names is None else X[list(names)]).to_numpy(float)
    if scaler.with_mean:
        z = z - scaler.mean_
    if scaler.with_std:
        z = z / scaler.scale_
    logit = np.full(len(z), logreg.intercept_[0])
    for column, weight in enumerate(logreg.coef_[0]):
        logit = logit + z[:, column] * weight
    return expit(logit)
