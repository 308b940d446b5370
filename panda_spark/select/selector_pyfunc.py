"""The registered selector's MLflow models-from-code file: MLflow runs it (with the package from the
model's code paths) to build the pyfunc, so loading the model unpickles nothing."""
import mlflow

from panda_spark.select.registry import SelectorModel

mlflow.models.set_model(SelectorModel())
