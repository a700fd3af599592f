"""Creates a tagged version with metadata and a child version, then publishes the parent.

argv: <v1 tree> <v2 tree> ; prints the two ids.
"""

import sys

from _common import emit, new_version
from clearml import Dataset

v1_src, v2_src = sys.argv[1:3]
parent = Dataset.create(dataset_project="keep", dataset_name="corpus", dataset_version="1.0.0")
parent.add_files(v1_src)
parent.set_metadata({"source": "restart test"}, metadata_name="about")
parent.upload()
parent.finalize()
parent.add_tags(["kept"])
parent.publish()
child = new_version("keep", "corpus", "2.0.0", v2_src, parents=[parent.id], sync=True)
emit({"parent": parent.id, "child": child.id})
