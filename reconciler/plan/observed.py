"""Which observed version stands for a manifest version, an observed version's content, and the fingerprint a
saved plan's staleness check compares. Pure: no IO.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import fields
from types import MappingProxyType

from ..model import (
    Content,
    ObservedState,
    ObservedVersion,
    Properties,
    VersionKey,
    canonical_json,
)


def observed_content(version: ObservedVersion) -> Content | None:
    if version.files is None or version.links is None:
        return None
    return Content(
        MappingProxyType({f.path: f for f in version.files}), MappingProxyType({lnk.path: lnk for lnk in version.links})
    )


def proves_content(version: ObservedVersion, content: Content) -> bool:
    """Whether ``version`` holds exactly ``content`` by the digest this tool recorded when it finalized it (then
    its file list need not be read nor compared). A draft's record proves nothing."""
    return version.finalized and version.content_digest is not None and version.content_digest == content.digest()


def live_content(version: ObservedVersion, desired: Content) -> Content | None:
    """What ``version`` holds: ``desired`` when its recorded digest proves it, else its file list as read (None
    when it was not read)."""
    return desired if proves_content(version, desired) else observed_content(version)


def choose_observed(candidates: Sequence[ObservedVersion]) -> ObservedVersion | None:
    """The server version that stands for a manifest version: finalized first, then this tool's newest draft."""
    live = [v for v in candidates if not v.archived]
    final = sorted((v for v in live if v.finalized), key=lambda v: v.last_update, reverse=True)
    if final:
        return final[0]
    drafts = sorted(live, key=lambda v: (v.managed, v.last_update), reverse=True)
    return drafts[0] if drafts else None


def archived_candidate(candidates: Sequence[ObservedVersion]) -> ObservedVersion | None:
    """The newest archived finalized version this tool made for a key (what a restore brings back); not one
    whose objects retention freed (it can no longer be downloaded)."""
    archived = sorted((v for v in candidates if v.archived and v.finalized and v.managed and not v.freed),
                      key=lambda v: v.last_update, reverse=True)
    return archived[0] if archived else None


# fields of an observed version that a saved plan's staleness check ignores: file lists are read on demand (a
# version's content is covered by its status, its recorded digest and last_update); storage is checked on demand
FINGERPRINT_EXCLUDED = frozenset({"files", "links", "missing_chunks", "corrupt_chunks", "reads", "inherited"})


def fingerprint(observed: ObservedState) -> str:
    """A digest of every observed field (but :data:`FINGERPRINT_EXCLUDED`); a saved plan is stale when it changes."""
    h = hashlib.sha256()
    names = [f.name for f in fields(ObservedVersion) if f.name not in FINGERPRINT_EXCLUDED]
    for v in sorted(observed.versions, key=lambda v: v.id):
        row = []
        for name in names:
            value = getattr(v, name)
            if isinstance(value, Properties):
                value = value.compare_key()
            elif isinstance(value, VersionKey):
                value = str(value)
            elif name == "objects":
                value = [[o.key, o.uri, o.size] for o in value]
            row.append(value)
        h.update(canonical_json(row).encode())
    return h.hexdigest()
