"""Acceptance 1: create, add nested files, upload, finalize; tags; metadata; list_datasets; Dataset.get.

argv: <source tree> ; prints the ids, listings and lookups as JSON.
"""

import sys

from _common import emit, summary
from clearml import Dataset

source = sys.argv[1]


def make(
    version: str, *, tags: list[str] | None = None, finalize: bool = True, metadata: dict | None = None
) -> Dataset:
    ds = Dataset.create(dataset_project="acme/vision", dataset_name="shapes", dataset_version=version)
    ds.add_files(source)
    if metadata is not None:  # before upload(), which waits for the SDK's background artifact uploads
        ds.set_metadata(metadata, metadata_name="labels")
    ds.upload()
    if finalize:
        ds.finalize()
    if tags:
        ds.add_tags(tags)
    return ds


v1 = make("1.0.0", tags=["stable", "gold"], metadata={"classes": ["circle", "square"], "count": 4})
v10 = make("1.10.0", tags=["gold"])
v2 = make("1.2.0")  # created last: "highest version" must not mean "most recent"
draft = make("2.0.0", finalize=False)
other = Dataset.create(dataset_project="acme/audio", dataset_name="beeps", dataset_version="0.1.0")
other.finalize()


def names_versions(items: list[dict]) -> list[list[str]]:
    return sorted([d["name"], d["version"]] for d in items)


emit(
    {
        "ids": {"v1": v1.id, "v10": v10.id, "v2": v2.id, "draft": draft.id, "other": other.id},
        "files": sorted(Dataset.get(dataset_id=v1.id).list_files()),
        "metadata": Dataset.get(dataset_id=v1.id).get_metadata(metadata_name="labels"),
        "list_vision": names_versions(Dataset.list_datasets(dataset_project="acme/vision")),
        "list_vision_all": names_versions(
            Dataset.list_datasets(dataset_project="acme/vision", only_completed=False)
        ),
        "list_gold": names_versions(Dataset.list_datasets(tags=["gold"])),
        "list_acme": names_versions(Dataset.list_datasets(dataset_project="acme")),
        "get_latest": summary(
            Dataset.get(dataset_project="acme/vision", dataset_name="shapes", only_completed=True)
        ),
        "get_version": summary(
            Dataset.get(dataset_project="acme/vision", dataset_name="shapes", dataset_version="1.2.0")
        ),
        "get_id": summary(Dataset.get(dataset_id=v10.id)),
        "get_tag": summary(Dataset.get(dataset_tags=["stable"])),
        "get_name_tag": summary(
            Dataset.get(dataset_project="acme/vision", dataset_name="shapes", dataset_tags=["gold"])
        ),
        "finalized": [Dataset.get(dataset_id=v1.id).is_final(), draft.is_final()],
    }
)
