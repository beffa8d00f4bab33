"""The direction model: features, dataset, walk-forward evaluation, training, registry and gate."""
