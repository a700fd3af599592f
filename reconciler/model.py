"""Frozen value types shared by the manifest loader, the sources, the planner and the backend.

Nothing here does IO. Dataset paths are POSIX, relative, normalised (no ``.``/``..`` segments, no leading
``/``); :func:`normalize_dataset_path` is the one place that enforces it.
"""

from __future__ import annotations

import operator
import posixpath
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol, TypeVar, overload

from .diagnostics import SourceSpan


@dataclass(frozen=True, slots=True, order=True)
class DatasetKey:
    project: str
    name: str

    def __str__(self) -> str:
        return f"{self.project}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> DatasetKey:
        """``project/sub/name`` -> (``project/sub``, ``name``); ValueError for a text without both parts."""
        project, _, name = text.rpartition("/")
        if not (project and name):
            raise ValueError(f"{text!r} is not PROJECT/NAME")
        return cls(project, name)


@dataclass(frozen=True, slots=True, order=True)
class VersionKey:
    project: str
    name: str
    version: str

    @property
    def dataset(self) -> DatasetKey:
        return DatasetKey(self.project, self.name)

    def __str__(self) -> str:
        return f"{self.project}/{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str, *, dataset: DatasetKey | None = None) -> VersionKey:
        """``project/sub/name@version`` (the version is what follows the last ``@``), or a bare ``version`` of
        ``dataset`` when one is given; ValueError for anything else."""
        if "@" not in text and dataset is not None and text:
            return cls(dataset.project, dataset.name, text)
        left, _, version = text.rpartition("@")
        if not (left and version):
            raise ValueError(f"{text!r} is not PROJECT/NAME@VERSION")
        key = DatasetKey.parse(left)
        return cls(key.project, key.name, version)


@dataclass(frozen=True, slots=True, order=True)
class FileEntry:
    """One file of a dataset version. ``local`` is where its bytes are on this machine (not compared)."""

    path: str
    size: int
    sha256: str
    local: str | None = field(default=None, compare=False)


class StoredFile(NamedTuple):
    """A file of a live version and where its bytes are: member ``path`` of the zip chunk (artifact) ``chunk``
    of version ``owner_id`` (the version that uploaded it: the version itself, a parent, any ancestor).

    A named tuple: a pull reads one per file of the version, and a tuple is built without a Python call.
    """

    path: str
    size: int
    sha256: str
    owner_id: str
    chunk: str


class StoredFiles(Sequence[StoredFile]):
    """The files of a version's file list, held compactly: the paths in one list, the sizes in one int64 array,
    the sha256 digests as 32 raw bytes each in one buffer, and each file's (owner, chunk) as an index into the
    few distinct pairs. A million files take about 120 MB instead of 400 as tuples of strings. Items are
    :class:`StoredFile` values, built when read (the path is the list's own string). A hash that is not 64
    lower-case hex digits is kept as given, apart."""

    __slots__ = ("_at", "_hashes", "_odd", "_places", "_where", "paths", "sizes")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.sizes = array("q")
        self._hashes = bytearray()
        self._places = array("I")
        self._where: list[tuple[str, str]] = []
        self._at: dict[tuple[str, str], int] = {}
        self._odd: dict[int, str] = {}

    def append(self, path: str, size: int, sha256: str, owner_id: str, chunk: str) -> None:
        at = self._at.get((owner_id, chunk))
        if at is None:
            at = self._at[(owner_id, chunk)] = len(self._where)
            self._where.append((owner_id, chunk))
        try:
            raw = bytes.fromhex(sha256) if len(sha256) == 64 else b""
        except ValueError:
            raw = b""
        if len(raw) != 32 or raw.hex() != sha256:
            self._odd[len(self.paths)] = sha256
            raw = bytes(32)
        self.paths.append(path)
        self.sizes.append(size)
        self._hashes += raw
        self._places.append(at)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> StoredFile: ...
    @overload
    def __getitem__(self, index: slice) -> list[StoredFile]: ...

    def __getitem__(self, index: int | slice) -> StoredFile | list[StoredFile]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self.paths)))]
        i = range(len(self.paths))[index]  # a negative index counted from the end; IndexError past it
        sha = self._odd.get(i) if self._odd else None
        if sha is None:
            sha = self._hashes[32 * i : 32 * i + 32].hex()
        return StoredFile(self.paths[i], self.sizes[i], sha, *self._where[self._places[i]])

    def __iter__(self) -> Iterator[StoredFile]:
        for i in range(len(self.paths)):
            yield self[i]


@dataclass(frozen=True, slots=True, order=True)
class LinkEntry:
    """An external file registered by URL. ``etag`` is what the store reported, when it reports one."""

    path: str
    url: str
    size: int | None = None
    etag: str | None = None


# --- desired state -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PathSource:
    """A local file or folder. ``path`` is absolute (resolved against the manifest's folder)."""

    path: Path
    dest: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TorchvisionSource:
    dataset: str  # torchvision class name, e.g. "MNIST"
    split: str  # "train" or "test"
    layout: Literal["raw", "images"] = "raw"
    dest: str = ""
    root: Path | None = None  # download cache; None: the user cache directory
    download: bool = False
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class UrlSource:
    """``s3://``, ``http(s)://`` or ``file://``; a URL ending in ``/`` is a prefix (every object under it)."""

    url: str
    dest: str = ""
    copy: bool = False
    span: SourceSpan | None = field(default=None, compare=False)


Source = PathSource | TorchvisionSource | UrlSource


def freeze_json(value: Any) -> Any:
    """A deep read-only copy of a JSON-like value (dicts become mappingproxies, lists tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze_json(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze_json(v) for v in value)
    return value


def thaw_json(value: Any) -> Any:
    """The inverse of :func:`freeze_json`: plain dicts and lists, ready for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw_json(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces (what equality of metadata means)."""
    import json

    return json.dumps(thaw_json(value), sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class Properties:
    """A version's mutable properties: what may change on a version after it is finalized.

    The desired spec, the observed version, the plan's :class:`~reconciler.plan.actions.SetProperties` and the diff
    report all hold this one value. Adding a property means: a field here, its schema and manifest reading,
    its reading and its write in the backend (``clearml_backend``); the differ
    (:func:`reconciler.properties.diff_properties`) and the renderers follow from the fields.
    ``metadata`` is frozen JSON (the ``metadata`` artifact ``Dataset.get_metadata()`` reads);
    ``metadata_artifacts`` the other named metadata (``set_metadata(..., metadata_name=NAME)``), NAME -> JSON
    object. Equality compares their canonical JSON (so ``1`` and ``true`` differ).
    ``splits`` names subsets of the version's files by globs (split name -> globs, sorted by name); a version
    without splits stores and shows none (``to_json`` leaves the field out).
    """

    description: str = ""
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False, hash=False)
    metadata_artifacts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False,
                                                  hash=False)
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), compare=False,
                                                  hash=False)
    _metadata_json: str = field(init=False, repr=False, default="{}")
    _artifacts_json: str = field(init=False, repr=False, default="{}")
    _splits_json: str = field(init=False, repr=False, default="{}")

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", frozenset(self.tags))
        object.__setattr__(self, "metadata", freeze_json(self.metadata))
        object.__setattr__(self, "metadata_artifacts", freeze_json(self.metadata_artifacts))
        object.__setattr__(self, "_metadata_json", canonical_json(self.metadata))
        object.__setattr__(self, "_artifacts_json", canonical_json(self.metadata_artifacts))
        object.__setattr__(self, "splits", normalize_splits(self.splits))
        object.__setattr__(self, "_splits_json", canonical_json(self.splits))

    @property
    def splits_json(self) -> str:
        return self._splits_json

    @property
    def metadata_json(self) -> str:
        return self._metadata_json

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values by field name (tags sorted): how plans and bookkeeping store properties."""
        return {name: _PROPERTY_TO_JSON[name](getattr(self, name)) for name in PROPERTY_FIELDS
                if name != "splits" or self.splits}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: Properties | None = None) -> Properties:
        """The properties ``data`` gives (fields it lacks, or gives with the wrong type, come from ``base``)."""
        base = base or cls()
        values = {}
        for name in PROPERTY_FIELDS:
            value = data.get(name)
            values[name] = _PROPERTY_FROM_JSON[name](value) if _PROPERTY_VALID[name](value) else getattr(base, name)
        return cls(**values)

    def replace(self, **changes: Any) -> Properties:
        return Properties(**{**{name: getattr(self, name) for name in PROPERTY_FIELDS}, **changes})

    def compare_key(self) -> str:
        """One string that differs exactly when the properties differ (for fingerprints)."""
        return canonical_json(self.to_json())


def normalize_splits(value: Mapping[str, Any]) -> Mapping[str, tuple[str, ...]]:
    """Splits as stored and compared: name -> tuple of globs (one glob may be given as a string), by name."""
    out = {str(name): (str(globs),) if isinstance(globs, str) else tuple(str(g) for g in globs)
           for name, globs in sorted(value.items()) if isinstance(globs, (str, list, tuple))}
    return MappingProxyType(out)


def statistics_key(content_digest: str, splits: Mapping[str, Sequence[str]]) -> str:
    """What a version's statistics describe: its content, and its declared splits when it has any (the split of
    each image comes from them), so that statistics follow a change of either."""
    if not splits:
        return content_digest
    import hashlib

    return hashlib.sha256(f"statistics-splits\0{content_digest}\0{canonical_json(splits)}".encode()).hexdigest()


PROPERTY_FIELDS: tuple[str, ...] = ("description", "tags", "metadata", "metadata_artifacts", "splits")
_PROPERTY_TO_JSON: Mapping[str, Any] = MappingProxyType({
    "description": str, "tags": sorted, "metadata": lambda m: thaw_json(m),
    "metadata_artifacts": lambda m: thaw_json(m), "splits": lambda s: {k: list(v) for k, v in s.items()}})
_PROPERTY_FROM_JSON: Mapping[str, Any] = MappingProxyType({
    "description": str, "tags": lambda ts: frozenset(str(t) for t in ts), "metadata": lambda m: freeze_json(m),
    "metadata_artifacts": lambda m: freeze_json({str(k): v for k, v in m.items() if isinstance(v, Mapping)}),
    "splits": normalize_splits})
_PROPERTY_VALID: Mapping[str, Any] = MappingProxyType({
    "description": lambda v: isinstance(v, str), "tags": lambda v: isinstance(v, (list, tuple, set, frozenset)),
    "metadata": lambda v: isinstance(v, Mapping), "metadata_artifacts": lambda v: isinstance(v, Mapping),
    "splits": lambda v: isinstance(v, Mapping)})


CHECK_SEVERITIES: tuple[str, ...] = ("error", "warn")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One validation gate of a version (``checks:`` in a manifest); :mod:`reconciler.checks` evaluates it.

    ``params`` are the rule's own options as frozen JSON (paths in them already absolute); ``error_if`` and
    ``warn_if`` are dbt-style conditions over the rule's measure (``">5"``, ``"<100"``, ``"!=0"``).
    """

    name: str
    rule: str
    severity: str = "error"
    error_if: str | None = None
    warn_if: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False, hash=False)
    span: SourceSpan | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "severity": self.severity, "error_if": self.error_if,
                "warn_if": self.warn_if, "params": thaw_json(self.params),
                "span": None if self.span is None else [self.span.file, self.span.line, self.span.col]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckSpec:
        span = data.get("span")
        return cls(str(data["name"]), str(data["rule"]), str(data.get("severity", "error")), data.get("error_if"),
                   data.get("warn_if"), freeze_json(data.get("params") or {}),
                   SourceSpan(str(span[0]), int(span[1]), int(span[2])) if span else None)


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """``parents``: ordered; the content starts as theirs merged in order (a later parent's file at the same path
    wins, as in the SDK's ``Dataset.create(parent_datasets=[...])``), then ``remove``, then the sources."""

    key: VersionKey
    parents: tuple[VersionKey, ...] = ()
    sources: tuple[Source, ...] = ()
    remove: tuple[str, ...] = ()  # globs over dataset paths, applied to the parent's content
    publish: bool = False
    properties: Properties = Properties()
    adopt: str | None = None  # the id of an existing version taken as it is (its content is the server's)
    span: SourceSpan | None = field(default=None, compare=False)
    checks: tuple[CheckSpec, ...] = ()  # the dataset's checks, with the version's own in place of same-named ones

    @property
    def parent(self) -> VersionKey | None:
        """The first parent (the one a new version's name and project follow in ClearML), or None."""
        return self.parents[0] if self.parents else None


DAY = 86400  # seconds


@dataclass(frozen=True, slots=True)
class Retention:
    """A dataset's retention policy (durations in seconds). A version is out of the policy when it is not one of
    the ``keep_last`` newest the manifests name, or was created more than ``max_age`` ago; it is then archived,
    and deleted with its stored objects ``grace`` after that, unless something still needs it (an alias,
    ``published`` without ``delete_published``, a task that read it within ``used_within``, kept versions that
    read its chunks)."""

    keep_last: int | None = None
    max_age: int | None = None
    grace: int = 14 * DAY
    delete_published: bool = False
    used_within: int = 30 * DAY
    rehome: bool = False  # copy what the oldest kept version inherits into its own chunks, so older versions go whole


ALL_OBJECTS = "*"  # as the key of a read (version id, key): every object of that version


@dataclass(frozen=True, slots=True, order=True)
class StoredObject:
    """One object a version owns in storage: an artifact (``key``: ``data``, ``data_001``, ``state``, ...)."""

    key: str
    uri: str
    size: int


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    key: DatasetKey
    versions: tuple[VersionSpec, ...]
    properties: Properties = Properties()  # the dataset's description, tags, metadata: every version carries them
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)  # alias -> version
    statistics: bool = False
    storage: str | None = None  # upload target; None: the server's files host
    chunk_size_mb: int | None = None  # None: chosen from the upload's size and the workers
    compression: str = "auto"  # auto | deflate | store
    retention: Retention | None = None
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Every dataset the manifests name, sorted by key; versions within a dataset in manifest order."""

    datasets: tuple[DatasetSpec, ...] = ()
    _by_dataset: Mapping[DatasetKey, DatasetSpec] = field(init=False, repr=False, compare=False, hash=False)
    _by_version: Mapping[VersionKey, VersionSpec] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # lookups by key are constant-time: planning a thousand datasets must not be quadratic
        object.__setattr__(self, "_by_dataset", MappingProxyType({ds.key: ds for ds in self.datasets}))
        object.__setattr__(
            self, "_by_version", MappingProxyType({v.key: v for ds in self.datasets for v in ds.versions})
        )

    def dataset(self, key: DatasetKey) -> DatasetSpec:
        try:
            return self._by_dataset[key]
        except KeyError:
            raise KeyError(str(key)) from None

    def version(self, key: VersionKey) -> VersionSpec:
        try:
            return self._by_version[key]
        except KeyError:
            raise KeyError(str(key)) from None

    def all_versions(self) -> tuple[VersionSpec, ...]:
        return tuple(v for ds in self.datasets for v in ds.versions)

    def lineage(self, key: VersionKey) -> tuple[VersionSpec, ...]:
        """The version and all its ancestors, every ancestor before its children. The manifest loader
        guarantees there is no cycle."""
        order: list[VersionSpec] = []
        seen: set[VersionKey] = {key}
        # depth-first, parents in order, without recursion: a chain may be thousands of versions long
        stack: list[tuple[VersionSpec, int]] = [(self.version(key), 0)]
        while stack:
            spec, at = stack.pop()
            if at < len(spec.parents):
                stack.append((spec, at + 1))
                parent = spec.parents[at]
                if parent not in seen:
                    seen.add(parent)
                    stack.append((self.version(parent), 0))
            else:
                order.append(spec)
        return tuple(order)


# --- observed state ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObservedVersion:
    """A dataset version as the server has it. ``files``/``links`` are None when not read (only the summary)."""

    key: VersionKey
    id: str
    status: str  # created | in_progress | completed | published | closed | failed | stopped ...
    properties: Properties = Properties()
    parent_ids: tuple[str, ...] = ()
    files: tuple[FileEntry, ...] | None = None
    links: tuple[LinkEntry, ...] | None = None
    file_count: int | None = None
    total_size: int | None = None
    managed: bool = False  # created by this tool
    archived: bool = False
    last_update: str = ""
    content_digest: str | None = None  # recorded by this tool: content_digest() of what it uploaded
    statistics_digest: str | None = None  # recorded by this tool: content digest its stored statistics describe
    missing_chunks: tuple[str, ...] = ()  # data chunks not found in storage (only checked when asked)
    corrupt_chunks: tuple[str, ...] = ()  # data chunks whose bytes differ from their recorded sha256 (when asked)
    applied: Properties | None = None  # what this tool last wrote (None: not recorded); differences are drift
    unread_metadata: tuple[str, ...] = ()  # metadata artifacts changed since this tool wrote them, not read yet
    pruned: bool = False  # archived by this tool (apply --prune), not by someone else
    lost_system_tags: tuple[str, ...] = ()  # system tags every dataset version has, missing here
    aliases: tuple[str, ...] = ()  # the tags apply set on it as aliases (recorded)
    created: str = ""  # when the task was created (ISO 8601)
    objects: tuple[StoredObject, ...] = ()  # what the version stores (its artifacts), sorted by key
    expired_at: str = ""  # when retention archived it (ISO 8601); "" when it did not
    freed: tuple[str, ...] = ()  # artifact keys whose objects retention deleted (the version is not restorable)
    reads: tuple[tuple[str, str], ...] | None = None  # (owner version id, chunk) its files are read from, when read
    inherited: tuple[int, int] | None = None  # (files, bytes) its file list reads from other versions' chunks
    rehome_pending: bool = False  # re-homed, the versions built on it not all rewritten yet (an interrupted run)

    @property
    def finalized(self) -> bool:
        return self.status in FINAL_STATUSES


# The statuses of a version's task, the one place they are grouped:
FINAL_STATUSES = frozenset({"completed", "published", "closed"})  # finalized: its content is fixed
EDITABLE_STATUSES = frozenset({"created", "in_progress"})  # a draft that takes writes as it is
DRAFT_STATUSES = frozenset({*EDITABLE_STATUSES, "stopped", "failed"})  # a draft left behind: what a discard deletes
STEP_LEFT_STATUSES = frozenset({"queued", "failed", "stopped"})  # a draft an agent's step left: reopened to resume


def parse_time(value: object) -> datetime | None:
    """A server or recorded time (ISO 8601, ``Z`` or an offset; naive is UTC) as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True, order=True)
class TaskUse:
    """A ClearML task that read a dataset version with ``Dataset.get`` (the SDK records the version's id in the
    task's ``runtime.datasets``). ``project`` is the task's project name ("" when it has none);
    ``last_update`` is timezone-aware, None when the server gave none."""

    id: str
    name: str
    project: str
    status: str
    last_update: datetime | None = None


@dataclass(frozen=True, slots=True)
class ObservedState:
    versions: tuple[ObservedVersion, ...] = ()
    fingerprint: str = ""  # changes whenever anything observed changes; a saved plan records it

    def by_key(self) -> dict[VersionKey, list[ObservedVersion]]:
        """The versions grouped by key (several versions may claim one key: duplicates, archived copies)."""
        grouped: dict[VersionKey, list[ObservedVersion]] = {}
        for v in self.versions:
            grouped.setdefault(v.key, []).append(v)
        return grouped


def normalize_dataset_path(path: str) -> str | None:
    """The normal form of a relative dataset path, or None when it is absolute or escapes with ``..``."""
    if not path:
        return ""
    p = path.replace("\\", "/")
    if p.startswith("/") or "\x00" in p or (len(p) > 1 and p[1] == ":"):
        return None
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            return None
        parts.append(seg)
    return posixpath.join(*parts) if parts else ""


def join_dataset_path(dest: str, rel: str) -> str:
    """``dest`` and ``rel`` joined; both already normalised."""
    if not dest:
        return rel
    if not rel:
        return dest
    return f"{dest}/{rel}"


# The torchvision classes a `torchvision:` source supports, with their splits. The manifest loader validates
# against this table; reconciler.sources.torchvision implements every entry.
TORCHVISION_SPLITS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "MNIST": ("train", "test"),
        "FashionMNIST": ("train", "test"),
        "KMNIST": ("train", "test"),
        "CIFAR10": ("train", "test"),
        "CIFAR100": ("train", "test"),
    }
)
TORCHVISION_LAYOUTS: tuple[str, ...] = ("raw", "images")
URL_SCHEMES: tuple[str, ...] = ("s3", "http", "https", "file")


T = TypeVar("T")
V = TypeVar("V")


class DeferredTuple(Sequence[T]):
    """A tuple built on first use (``build`` runs once). Compares equal to the tuple it stands for."""

    __slots__ = ("_build", "_items")

    def __init__(self, build: Callable[[], tuple[T, ...]]) -> None:
        self._build: Callable[[], tuple[T, ...]] | None = build
        self._items: tuple[T, ...] | None = None

    def _get(self) -> tuple[T, ...]:
        if self._items is None:
            assert self._build is not None
            self._items, self._build = self._build(), None
        return self._items

    def __len__(self) -> int:
        return len(self._get())

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...

    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        return self._get()[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self._get())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DeferredTuple):
            other = other._get()
        return isinstance(other, tuple) and self._get() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._get())


class DeferredMapping(Mapping[str, V]):
    """A read-only mapping built on first use (``build`` runs once)."""

    __slots__ = ("_build", "_items")

    def __init__(self, build: Callable[[], Mapping[str, V]]) -> None:
        self._build: Callable[[], Mapping[str, V]] | None = build
        self._items: Mapping[str, V] | None = None

    def _get(self) -> Mapping[str, V]:
        if self._items is None:
            assert self._build is not None
            self._items, self._build = self._build(), None
        return self._items

    def resolved(self) -> Mapping[str, V]:
        """The mapping itself, built (look-ups on it cost no Python call)."""
        return self._get()

    def __getitem__(self, key: str) -> V:
        return self._get()[key]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._get()) == dict(resolved(other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._get())


@dataclass(frozen=True, slots=True)
class ContentSummary:
    """What a plan needs of a content it does not change: its digest and size."""

    digest: str
    file_count: int
    total_size: int


@dataclass(frozen=True)
class Content:
    """The full content of one dataset version: files and external links, keyed by dataset path.

    Treat the mappings as read-only: :meth:`digest` is computed once and kept. A content made with
    :meth:`deferred` builds its mappings only when they are read; its digest and size are known before.
    """

    files: Mapping[str, FileEntry] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    links: Mapping[str, LinkEntry] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    summary: ContentSummary | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def deferred(cls, build: Callable[[], Content], summary: ContentSummary) -> Content:
        """The content ``build()`` returns, built on first use of its files or links; ``summary`` is what it is
        known to be (the caller answers for that)."""
        built: list[Content] = []

        def content() -> Content:
            if not built:
                built.append(build())
            return built[0]

        return cls(DeferredMapping(lambda: content().files), DeferredMapping(lambda: content().links), summary)

    @classmethod
    def merged(cls, parents: Sequence[Content]) -> Content:
        """The content a version with these parents starts from: theirs merged in order, a later parent's file or
        link at the same path winning (the SDK's ``Dataset.create(parent_datasets=[...])``)."""
        if len(parents) == 1:
            return parents[0]
        files: dict[str, FileEntry] = {}
        links: dict[str, LinkEntry] = {}
        for p in parents:
            for path, f in p.files.items():
                links.pop(path, None)
                files[path] = f
            for path, lnk in p.links.items():
                files.pop(path, None)
                links[path] = lnk
        return cls(MappingProxyType(dict(sorted(files.items()))), MappingProxyType(dict(sorted(links.items()))))

    @property
    def total_size(self) -> int:
        if self.summary is not None:
            return self.summary.total_size
        return sum(f.size for f in self.files.values()) + sum(lnk.size or 0 for lnk in self.links.values())

    @property
    def file_count(self) -> int:
        if self.summary is not None:
            return self.summary.file_count
        return len(self.files) + len(self.links)

    def summarize(self) -> ContentSummary:
        return self.summary or ContentSummary(self.digest(), self.file_count, self.total_size)

    def digest(self) -> str:
        """A stable fingerprint of the content (paths, sizes, hashes, link targets); local paths are ignored."""
        return self.summary.digest if self.summary is not None else self._digest

    @cached_property
    def _digest(self) -> str:
        return content_digest(self.files, self.links)


class _Hashed(Protocol):
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


def content_digest(files: Mapping[str, _Hashed], links: Mapping[str, LinkEntry]) -> str:
    """:meth:`Content.digest` of files (anything with a size and a sha256, by dataset path) and links."""
    import hashlib

    h = hashlib.sha256()  # the lines are hashed in batches: a million files never make one string
    items = _items_in_order(files)
    while batch := list(islice(items, _BATCH)):
        h.update("".join([f"F\t{p}\t{f.size}\t{f.sha256}\n" for p, f in batch]).encode())
    h.update("".join([f"L\t{p}\t{lnk.url}\t{lnk.size}\t{lnk.etag}\n" for p, lnk in _items_in_order(links)]).encode())
    return h.hexdigest()


_BATCH = 8192


def resolved(mapping: Mapping[str, V]) -> Mapping[str, V]:
    """``mapping``, or what a :class:`DeferredMapping` stands for, built."""
    return mapping.resolved() if isinstance(mapping, DeferredMapping) else mapping


def _items_in_order(d: Mapping[str, V]) -> Iterator[tuple[str, V]]:
    """The items of ``d`` sorted by key, as an iterator (a million files never make a list of pairs); a linear
    check first, since contents are usually built in order."""
    keys = list(d)
    if all(map(operator.lt, keys, islice(keys, 1, None))):
        return iter(d.items())
    keys.sort()
    return ((k, d[k]) for k in keys)


# --- what a dataset's history shows (read by `show` and `graph`) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionLayout:
    """Where a version's files live: its parents as its stored lineage records them, and which of its files and
    bytes it stored itself (the rest are inherited from ancestors' chunks)."""

    parent_ids: tuple[str, ...]
    file_count: int
    total_size: int
    own_files: int
    own_size: int


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A zip chunk of a dataset version on the server: the artifact ``name`` of the version ``version_id`` that
    stored it, where it is, and its size and sha256 as recorded (None: not recorded)."""

    version_id: str
    name: str
    uri: str
    size: int | None = None
    sha256: str | None = None
