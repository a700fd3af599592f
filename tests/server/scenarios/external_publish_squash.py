"""Acceptance 3: external file:// and http links, publish, version auto-increment, squash, delete.

argv: <file:// url of a folder> <http url of a file> <local tree> ; prints what the SDK sees.
"""

import sys

from _common import emit, new_version, summary
from clearml import Dataset

file_url, http_url, tree = sys.argv[1:4]

links = Dataset.create(dataset_project="acme", dataset_name="links")  # no version: the SDK starts at 1.0.0
links.add_external_files(file_url)
links.add_external_files(http_url)
links.upload()
links.finalize()
links.publish()

second = new_version("acme", "links", None, tree, parents=[links.id])  # no version: auto-incremented

published = Dataset.get(dataset_id=links.id)
squashed = Dataset.squash(dataset_name="links_squashed", dataset_ids=[second.id])  # to a standalone version

doomed = new_version("acme", "doomed", "1.0.0", tree)
Dataset.delete(dataset_id=doomed.id, force=True)

emit(
    {
        "versions": [links.version, second.version],
        "link_entries": sorted(e.link for e in published.link_entries),
        "published_copy": published.get_local_copy(),
        "second_copy": Dataset.get(dataset_id=second.id).get_local_copy(),
        "squashed": summary(squashed),
        "squashed_files": sorted(squashed.list_files()),
        "squashed_copy": Dataset.get(dataset_id=squashed.id).get_local_copy(),
        "doomed_id": doomed.id,
        "remaining": sorted([d["name"], d["version"]] for d in Dataset.list_datasets(dataset_project="acme")),
    }
)
