"""MLflow "models from code" entry point: MLflow copies and runs this file to get the pyfunc model.

It exists so that the logged MLflow model contains code and safetensors data only, never a pickle.
"""

import mlflow

from anomalyvae.tracking.mlflow_model import AnomalyVAEModel

mlflow.models.set_model(AnomalyVAEModel())
