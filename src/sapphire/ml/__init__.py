"""Machine learning for trading: features, labels, leak-free validation, models, a model
registry, drift detection and the `ml` strategy (issue 5; see docs/ml.md)."""
