"""Prints what the SDK sees of the given dataset ids: identity, status, artifacts, metadata and a local copy.

argv: <dataset id>...
"""

import sys

from _common import emit, summary
from clearml import Dataset, Task

result = {}
for dataset_id in sys.argv[1:]:
    ds = Dataset.get(dataset_id=dataset_id)
    task = Task.get_task(task_id=dataset_id)
    metadata = ds.get_metadata(metadata_name="about") if "about" in task.artifacts else None
    result[dataset_id] = {
        **summary(ds),
        "status": task.get_status(),
        "artifacts": sorted(task.artifacts),
        "metadata": metadata,
        "files": sorted(ds.list_files()),
        "copy": ds.get_local_copy(),
    }
result["listed"] = sorted([d["name"], d["version"]] for d in Dataset.list_datasets(dataset_project="keep"))
emit(result)
