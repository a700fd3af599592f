"""Tries to use the SDK with the credentials in the environment; prints whether it was refused."""

from _common import emit
from clearml import Dataset

try:
    Dataset.list_datasets(dataset_project="anything")
except Exception as exc:  # the SDK raises on a refused login
    emit({"refused": True, "error": f"{type(exc).__name__}: {exc}"})
else:
    emit({"refused": False})
