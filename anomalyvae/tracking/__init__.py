"""Tracking: MLflow runs, the lineage of data and models, and the MLflow pyfunc model."""
