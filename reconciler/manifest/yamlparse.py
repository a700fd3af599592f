"""Composing manifest YAML with ruamel.yaml into :class:`~.yamldoc.Document` values (see :mod:`.yamldoc`).

Apart from :mod:`.yamldoc` so that a run whose manifests are all remembered (:mod:`.cache`) never loads ruamel.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..diagnostics import Diagnostic, SourceSpan
from .yamldoc import MAX_DEPTH, MAX_NODES, Document, JsonPath, ManifestFile

_STD = "tag:yaml.org,2002:"
_MAP, _SEQ, _MERGE, _TIMESTAMP = _STD + "map", _STD + "seq", _STD + "merge", _STD + "timestamp"
_SCALAR_TAGS = frozenset(_STD + t for t in ("str", "int", "float", "bool", "null", "timestamp"))


def parse_documents(mf: ManifestFile, raw: bytes) -> tuple[list[Document], list[Diagnostic]]:
    """Every non-empty document of the manifest ``mf`` whose bytes are ``raw`` (see :func:`.read_documents`)."""
    diags: list[Diagnostic] = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = err.object[: err.start]
        line, col = before.count(b"\n") + 1, err.start - (before.rfind(b"\n") + 1) + 1
        return [], [
            Diagnostic(
                f"not UTF-8 text (byte {err.object[err.start]:#04x})", SourceSpan(mf.display, line, col)
            )
        ]
    docs: list[Document] = []
    count = 0
    yaml = YAML(typ="rt")
    yaml.Composer = _DepthLimitedComposer
    try:
        for index, node in enumerate(yaml.compose_all(io.StringIO(text))):
            count += 1
            doc, problems = _convert_document(mf, index, node)
            diags.extend(problems)
            if doc is not None and not problems:
                docs.append(doc)
    except _TooDeep as err:
        diags.append(Diagnostic(_TOO_DEEP, SourceSpan(mf.display, err.line + 1, err.column + 1)))
    except YAMLError as err:
        diags.append(_syntax_diagnostic(mf, err))
    if count == 0 and not diags:
        diags.append(Diagnostic("no YAML documents in this file", SourceSpan(mf.display, 1, 1)))
    return docs, diags


_TOO_DEEP = f"values nested more than {MAX_DEPTH} levels deep"


class _TooDeep(Exception):
    def __init__(self, line: int, column: int) -> None:
        super().__init__(_TOO_DEEP)
        self.line, self.column = line, column


class _DepthLimitedComposer(Composer):
    """ruamel's composer, refusing a node nested deeper than :data:`MAX_DEPTH` before composing it."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self._levels = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            return super().compose_node(parent, index)
        if self._levels >= MAX_DEPTH:
            mark = self.parser.peek_event().start_mark
            raise _TooDeep(mark.line, mark.column)
        self._levels += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._levels -= 1


def _syntax_diagnostic(mf: ManifestFile, err: YAMLError) -> Diagnostic:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if isinstance(err, MarkedYAMLError):
        message = err.problem or err.context or "malformed YAML"
        ctx = err.context_mark
        same_place = (
            mark is not None and ctx is not None and (ctx.line, ctx.column) == (mark.line, mark.column)
        )
        if err.problem and err.context and ctx is not None and not same_place:
            message += f" ({err.context} at line {ctx.line + 1}, column {ctx.column + 1})"
    else:
        message = str(err).splitlines()[0] if str(err) else "malformed YAML"
    span = (
        SourceSpan(mf.display, mark.line + 1, mark.column + 1) if mark is not None else SourceSpan(mf.display)
    )
    return Diagnostic(f"invalid YAML: {message}", span)


def _convert_document(
    mf: ManifestFile, index: int, node: Node | None
) -> tuple[Document | None, list[Diagnostic]]:
    if node is None or (isinstance(node, ScalarNode) and str(node.tag) == _STD + "null" and node.value == ""):
        return None, []  # an empty document, e.g. after a trailing '---'
    doc = Document(mf, index, None)
    conv = _Converter(doc)
    doc.data = conv.convert(node, ())
    return doc, conv.diags


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


class _Converter:
    """Turns composed nodes into dicts, lists and JSON scalars, recording positions in its document.

    Timestamps stay the text the user wrote; keys become their text (``2019: x`` has key ``"2019"``);
    merge keys (``<<``) are applied, explicit keys winning; recursive aliases are refused.
    """

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.diags: list[Diagnostic] = []
        self.nodes = 0
        self.depth = 0
        self.too_deep = False
        self.active: set[int] = set()
        self.scalar = YAML(typ="safe", pure=True).constructor

    def problem(self, message: str, node: Node) -> None:
        self.diags.append(Diagnostic(message, SourceSpan(self.doc.file.display, *_pos(node))))

    def convert(self, node: Node, path: JsonPath) -> Any:
        self.nodes += 1
        if self.nodes == MAX_NODES:
            self.problem(f"document too large (more than {MAX_NODES} values after expanding aliases)", node)
        if self.nodes >= MAX_NODES:
            return None
        self.doc.values.setdefault(path, _pos(node))
        if id(node) in self.active:
            self.problem("recursive alias: a value contains itself", node)
            return None
        if self.depth >= MAX_DEPTH:  # aliases can nest a deep value inside another one
            if not self.too_deep:
                self.problem(f"{_TOO_DEEP} (after expanding aliases)", node)
                self.too_deep = True
            return None
        self.active.add(id(node))
        self.depth += 1
        try:
            return self._convert(node, path)
        finally:
            self.active.discard(id(node))
            self.depth -= 1

    def _convert(self, node: Node, path: JsonPath) -> Any:
        tag = str(node.tag)
        if isinstance(node, MappingNode) and tag == _MAP:
            return self._mapping(node, path)
        if isinstance(node, SequenceNode) and tag == _SEQ:
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, ScalarNode) and tag in _SCALAR_TAGS:
            return self._scalar(node)
        self.problem(
            f"tag {_show_tag(tag)} is not allowed: manifests hold only maps, lists, strings, numbers, "
            "booleans and null",
            node,
        )
        return None

    def _scalar(self, node: ScalarNode) -> Any:
        if str(node.tag) == _TIMESTAMP:
            return str(node.value)
        try:
            return self.scalar.construct_object(node)
        except (YAMLError, ValueError) as err:
            self.problem(f"invalid {_show_tag(str(node.tag))} value {node.value!r}: {err}", node)
            return None

    def _mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first: dict[str, Node] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if str(key_node.tag) == _MERGE:
                merges.append(value_node)
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in first:
                line, col = _pos(first[key])
                self.problem(f"duplicate key {key!r} (first at line {line}, column {col})", key_node)
                continue
            first[key] = key_node
            self.doc.keys.setdefault((*path, key), _pos(key_node))
            result[key] = self.convert(value_node, (*path, key))
        for merged in merges:
            self._merge(merged, path, result)
        return result

    def _merge(self, node: Node, path: JsonPath, into: dict[str, Any]) -> None:
        """Applies ``<<: *anchor`` or ``<<: [*a, *b]``: keys already present win, then earlier maps."""
        targets = node.value if isinstance(node, SequenceNode) else [node]
        for target in targets:
            if not isinstance(target, MappingNode) or str(target.tag) != _MAP:
                self.problem("a merge key (<<) needs a map or a list of maps", target)
                continue
            merged = self.convert(target, path)
            for key, value in (merged or {}).items():
                into.setdefault(key, value)

    def _key(self, node: Node) -> str | None:
        if not isinstance(node, ScalarNode) or str(node.tag) not in _SCALAR_TAGS:
            self.problem("a key must be a plain scalar (a string)", node)
            return None
        return str(node.value)
