"""A plan action in one line of text, as renderers and progress lines print it."""

from __future__ import annotations

from ._compat import assert_never
from .plan.actions import (
    Action,
    Archive,
    CreateVersion,
    DeleteVersion,
    DiscardDraft,
    Finalize,
    Publish,
    RehomeVersion,
    Restore,
    ResumeVersion,
    SetChecks,
    SetProperties,
    SetStatistics,
    SyncFiles,
)
from .properties import changed_fields
from .wording import human_size


def describe(action: Action) -> str:
    """A one-line, human description of an action (used by renderers and progress lines)."""
    match action:
        case CreateVersion(version=v, parents=ps):
            names = ", ".join(p.version if p.dataset == v.dataset else str(p) for p in ps)
            return f"create {v}" + (f" (parent {names})" if len(ps) == 1 else f" (parents {names})" if ps else "")
        case ResumeVersion(version=v, version_id=i):
            return f"resume draft {v} ({i})"
        case Restore(version=v, version_id=i, archived=archived, system_tags=tags):
            return f"restore {'archived ' if archived else ''}{v} ({i})" + (
                f" and its system tag {', '.join(tags)}" if tags else "")
        case DiscardDraft(version=v, version_id=i):
            return f"discard stray draft {i} of the finalized {v}"
        case SyncFiles(version=v):
            return (
                f"sync files of {v}: upload {len(action.upload)} ({human_size(action.upload_bytes)}), "
                f"remove {len(action.remove) + len(action.remove_links)}, link {len(action.add_links)}"
            )
        case SetStatistics(version=v, after_digest=d):
            return f"compute statistics of {v} (content {d[:12]})"
        case SetChecks(version=v, checks=c):
            return f"store checks of {v} ({len(c.results)} checks, {len(c.warned)} warned)"


        case SetProperties(version=v, alias=True):
            gained, lost = action.after.tags - action.before.tags, action.before.tags - action.after.tags
            return (f"move alias {', '.join(sorted(gained))} to {v}" if gained
                    else f"take alias {', '.join(sorted(lost))} off {v}")
        case SetProperties(version=v):
            return f"set {', '.join(changed_fields(action.before, action.after))} of {v}"
        case Finalize(version=v):
            return f"finalize {v}"
        case Publish(version=v):
            return f"publish {v}"
        case Archive(version=v, version_id=i):
            return f"archive {v} ({i})"
        case RehomeVersion(version=v, version_id=i):
            return (f"re-home {v} ({i}): copy {action.files} inherited files ({human_size(action.copy_bytes)}), "
                    f"rewrite {len(action.rewrites) + 1} file lists")
        case DeleteVersion(version=v, version_id=i):
            what = "delete" if action.whole else "free objects of"
            return f"{what} {v} ({i}): {len(action.objects)} objects, {human_size(action.freed_bytes)}"
        case _:
            assert_never(action)
