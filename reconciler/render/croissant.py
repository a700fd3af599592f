"""A version as Croissant 1.0 JSON-LD (MLCommons' dataset metadata format), with the Responsible-AI fields.

``distribution``: one ``cr:FileObject`` per zip chunk (its address and recorded sha256) and one per file,
``containedIn`` its chunk, with the sha256 the file list records (what ``get_local_copy()`` yields). Image files
also form one ``cr:FileSet`` per extension. ``recordSet``: ``splits`` (``cr:Split``: the split folders, the
rule the statistics use) and ``classes`` with their names as inline data, and ``images``, whose fields read
the image, its split and its class from each file's path. The card gives the name, licence (an SPDX URL, or
its link), citation and the ``rai:`` fields. External links have no recorded hash and are left out.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from typing import Any

from ..export import VersionExport
from ..statistics import NONE, is_image, split_and_class

CROISSANT_1_0 = "http://mlcommons.org/croissant/1.0"
RAI_1_0 = "http://mlcommons.org/croissant/RAI/1.0"
CONTEXT: dict[str, Any] = {  # the standard Croissant 1.0 context (as mlcroissant writes it)
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/", "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "sc": "https://schema.org/", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform", "samplingRate": "cr:samplingRate",
    "equivalentProperty": "cr:equivalentProperty",
}
RAI_FIELDS = {  # card responsible_ai key -> Croissant RAI property
    "data_collection": "rai:dataCollection", "data_collection_type": "rai:dataCollectionType",
    "data_preprocessing_protocol": "rai:dataPreprocessingProtocol",
    "data_annotation_protocol": "rai:dataAnnotationProtocol", "data_limitations": "rai:dataLimitations",
    "data_biases": "rai:dataBiases", "personal_sensitive_information": "rai:personalSensitiveInformation",
    "data_use_cases": "rai:dataUseCases", "data_social_impact": "rai:dataSocialImpact",
    "has_synthetic_data": "rai:hasSyntheticData", "data_release_maintenance_plan": "rai:dataReleaseMaintenancePlan",
}


def _format(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _chunk_id(owner: str, name: str) -> str:
    return f"chunk/{owner}/{name}"


def _file_id(path: str) -> str:
    """A file's ``@id``: ids may hold no whitespace (mlcroissant), paths may; the path is the ``name``."""
    return "file/" + hashlib.sha256(path.encode()).hexdigest()[:24]


def _licence(card: Any) -> str | None:
    licence = str(card.get("license") or "") if card else ""
    if not licence:
        return None
    if licence.lower() == "other":
        return str(card.get("license_link") or card.get("license_name") or "other")
    return f"https://spdx.org/licenses/{licence}.html"


def _text_field(record_set: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"@type": "cr:Field", "@id": f"{record_set}/{name}", "name": name, "dataType": "sc:Text", **extra}


def _record_sets(x: VersionExport) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """File sets and record sets of the image files (nothing when the version has none)."""
    images = [f for f in x.files if is_image(f.path)]
    if not images:
        return [], []
    splits = sorted({s for s, _ in (split_and_class(f.path) for f in images) if s != NONE})
    classes = sorted({c for _, c in (split_and_class(f.path) for f in images) if c != NONE})
    extensions = sorted({f.path.rsplit(".", 1)[-1].lower() for f in images if "." in f.path.rsplit("/", 1)[-1]})
    chunk_ids = sorted({_chunk_id(f.owner_id, f.chunk) for f in images})
    file_sets = [{"@type": "cr:FileSet", "@id": f"images-{ext}", "name": f"images-{ext}",
                  "containedIn": [{"@id": c} for c in chunk_ids], "encodingFormat": _format(f"x.{ext}"),
                  "includes": f"**/*.{ext}"} for ext in extensions]
    record_sets: list[dict[str, Any]] = []
    fields: list[dict[str, Any]] = []
    source = {"fileSet": {"@id": file_sets[0]["@id"]}} if len(file_sets) == 1 else None
    if splits:
        record_sets.append({"@type": "cr:RecordSet", "@id": "splits", "name": "splits", "dataType": "cr:Split",
                            "key": {"@id": "splits/name"}, "field": [_text_field("splits", "name")],
                            "data": [{"splits/name": s} for s in splits]})
    if classes:
        record_sets.append({"@type": "cr:RecordSet", "@id": "classes", "name": "classes",
                            "key": {"@id": "classes/name"}, "field": [_text_field("classes", "name")],
                            "data": [{"classes/name": c} for c in classes]})
    if source is not None:  # one file set: the images record set reads it (split and class from the path)
        fields.append({"@type": "cr:Field", "@id": "images/image", "name": "image", "dataType": "sc:ImageObject",
                       "source": {**source, "extract": {"fileProperty": "content"}}})
        split_re = "|".join(re.escape(s) for s in splits)
        if splits:
            fields.append(_text_field("images", "split", references={"field": {"@id": "splits/name"}}, source={
                **source, "extract": {"fileProperty": "fullpath"},
                "transform": {"regex": f"^(?:.*/)?({split_re})/[^/]+/[^/]+$"}}))
        if classes:
            regex = f"^(?:.*/)?(?:{split_re})/([^/]+)/[^/]+$" if splits else "^(?:.*/)?([^/]+)/[^/]+$"
            fields.append(_text_field("images", "label", references={"field": {"@id": "classes/name"}}, source={
                **source, "extract": {"fileProperty": "fullpath"}, "transform": {"regex": regex}}))
        record_sets.append({"@type": "cr:RecordSet", "@id": "images", "name": "images", "field": fields})
    return file_sets, record_sets


def croissant_jsonld(x: VersionExport) -> dict[str, Any]:
    v = x.version
    card = x.card or {}
    used = sorted({(f.owner_id, f.chunk) for f in x.files})
    distribution: list[dict[str, Any]] = []
    for owner, name in used:
        chunk = x.chunks[(owner, name)]
        entry: dict[str, Any] = {"@type": "cr:FileObject", "@id": _chunk_id(owner, name),
                                 "name": f"{owner}-{name}.zip", "contentUrl": chunk.uri,
                                 "encodingFormat": "application/zip"}
        if chunk.size is not None:
            entry["contentSize"] = f"{chunk.size} B"
        if chunk.sha256:
            entry["sha256"] = chunk.sha256
        distribution.append(entry)
    for f in x.files:
        distribution.append({"@type": "cr:FileObject", "@id": _file_id(f.path), "name": f.path, "contentUrl": f.path,
                             "containedIn": {"@id": _chunk_id(f.owner_id, f.chunk)}, "contentSize": f"{f.size} B",
                             "encodingFormat": _format(f.path), "sha256": f.sha256})
    file_sets, record_sets = _record_sets(x)
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": [CROISSANT_1_0, RAI_1_0],
        "name": str(card.get("pretty_name") or v.key.name),
        "description": v.properties.description or x.card_text.strip() or f"{v.key} (ClearML dataset version {v.id})",
        "url": x.page_url,
        "version": v.key.version,
        "identifier": v.id,
        "citeAs": str(card.get("citation") or f"{v.key} (ClearML dataset version {v.id})"),
        "distribution": distribution + file_sets,
        "recordSet": record_sets,
    }
    if v.last_update:
        doc["datePublished"] = v.last_update
    licence = _licence(card)
    if licence:
        doc["license"] = licence
    if v.properties.tags:
        doc["keywords"] = sorted(v.properties.tags)
    raw_rai = card.get("responsible_ai")
    rai: dict[str, Any] = dict(raw_rai) if isinstance(raw_rai, dict) else {}
    for key, prop in RAI_FIELDS.items():
        if key in rai:
            doc[prop] = rai[key]
    return doc
