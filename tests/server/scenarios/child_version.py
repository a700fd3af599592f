"""Acceptance 2: a child version that adds, modifies and removes files; local copies of both versions.

argv: <v1 tree> <v2 tree> <dir for the mutable copy> ; the v2 tree is v1 with files added/modified/removed.
"""

import sys

from _common import emit, new_version
from clearml import Dataset

v1_src, v2_src, mutable_dir = sys.argv[1:4]

parent = new_version("acme", "text", "1.0.0", v1_src)
child = new_version("acme", "text", "1.1.0", v2_src, parents=[parent.id], sync=True)

fetched = Dataset.get(dataset_id=child.id)
emit(
    {
        "parent": parent.id,
        "child": child.id,
        "added": sorted(fetched.list_added_files()),
        "modified": sorted(fetched.list_modified_files()),
        "removed": sorted(fetched.list_removed_files()),
        "graph": fetched.get_dependency_graph(),
        "parent_copy": Dataset.get(dataset_id=parent.id).get_local_copy(),
        "child_copy": fetched.get_local_copy(),
        "mutable_copy": fetched.get_mutable_local_copy(mutable_dir, overwrite=True),
    }
)
