"""Scoring: P(up) of feature rows with a served model, bit for bit the same in any batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.pipeline import Pipeline


def probabilities(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """P(up) of each row, computed row by row in a fixed order.

    A BLAS matrix product may round a row's logit differently depending on the batch
    around it; this way a row scores to the same bits in any micro-batch, which is
    what makes a replayed batch write identical predictions.
    """
    steps = model.named_steps
    if set(steps) != {"scale", "logreg"}:
        return model.predict_proba(X)[:, 1]
    scaler, logreg = steps["scale"], steps["logreg"]
    z = (X.to_numpy(float) - scaler.mean_) / scaler.scale_
    return expit((z * logreg.coef_[0]).sum(axis=1) + logreg.intercept_[0])
