"""Creates, uploads and finalizes dataset <name> in <project> from <tree>, then reads it back by name.

argv: <project> <name> <tree>
"""

import sys

from _common import emit
from clearml import Dataset

project, name, tree = sys.argv[1:4]
ds = Dataset.create(dataset_project=project, dataset_name=name, dataset_version="1.0.0")
ds.add_files(tree)
ds.upload(chunk_size=1)  # 1 MB chunks: several uploads per dataset
ds.finalize()
back = Dataset.get(dataset_project=project, dataset_name=name)
emit({"id": ds.id, "back_id": back.id, "copy": back.get_local_copy()})
