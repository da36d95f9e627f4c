"""What MLflow runs to build the served model ("models from code": nothing is pickled).

MLflow runs this file under a module name of its own (`code_model_<uuid>`), so a class
defined here would be a new class at each load. The class is imported instead: the model
built is a `src.deployment.served_model.ImageClassifierModel`, which is what
`src.deployment.loading` checks for.
"""

import mlflow

from src.deployment.served_model import ImageClassifierModel

mlflow.models.set_model(ImageClassifierModel())
