"""YAML loading that remembers the line of every mapping key and list item, for error messages."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from federation.errors import TopologyError

Path_ = tuple[str | int, ...]

MERGE_TAG = "tag:yaml.org,2002:merge"
# A topology of 20 DCs of 9 members with jobs is some 3,000 nodes and 30 kB: these bounds are far above any
# real file and far below what an alias bomb needs to hurt (each alias counts as the nodes it expands to).
MAX_BYTES = 1024 * 1024
MAX_NODES = 50_000
MAX_DEPTH = 24


class LineMap:
    def __init__(self, lines: dict[Path_, int]) -> None:
        self._lines = lines

    def line_of(self, path: Path_) -> int:
        """Line of the longest known prefix of `path` (1 for the document itself)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return 1


def load_yaml_with_lines(text: str, source: str) -> tuple[Any, LineMap]:
    if len(text.encode()) > MAX_BYTES:
        raise TopologyError(source, [f"{source}:1: the file is {len(text.encode())} bytes, more than a topology "
                                     f"needs (at most {MAX_BYTES}): is it the right file?"])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_shape(node, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(source, [f"{source}:{_yaml_error(exc)}"]) from None
    lines: dict[Path_, int] = {}
    problems: list[str] = []
    if node is not None:
        _walk(node, (), lines, SafeConstructor(), problems, source)
    if problems:
        raise TopologyError(source, problems)
    return data, LineMap(lines)


def _check_shape(root: yaml.Node, source: str) -> None:
    """Refuse, before anything walks the data, a document that nests too deeply, refers to itself through an
    anchor, or expands (aliases counted at their full size) to more nodes than any topology has."""
    count = 0
    stack: list[tuple[yaml.Node, tuple[int, ...]]] = [(root, ())]
    while stack:
        node, ancestors = stack.pop()
        count += 1
        line = node.start_mark.line + 1
        if count > MAX_NODES:
            raise TopologyError(source, [f"{source}:{line}: the document expands to more than {MAX_NODES} values "
                                         "(aliases of aliases?): a topology is far smaller"])
        if id(node) in ancestors:
            raise TopologyError(source, [f"{source}:{line}: an anchor refers to itself through an alias: the "
                                         "value would never end"])
        if len(ancestors) >= MAX_DEPTH:
            raise TopologyError(source, [f"{source}:{line}: nested more than {MAX_DEPTH} levels deep: a topology "
                                         "is far flatter"])
        inner = (*ancestors, id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [(child, inner) for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(child, inner) for child in node.value]


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark.line + 1 != line:
        problem += f" ({context} that starts at line {context_mark.line + 1})"
    return f"{line}: not valid YAML: {problem}"


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], keys: SafeConstructor,
          problems: list[str], source: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:
                continue  # `<<: *anchor` keys land in the data under the anchor's names
            # Resolve the key as YAML does, so `on:` or `1:` are caught here rather than misplaced later.
            scalar = isinstance(key_node, yaml.ScalarNode)
            key = keys.construct_object(key_node, deep=True) if scalar else None
            if not isinstance(key, str):
                shown = dotted_path((*path, str(key_node.value) if scalar else "?"))
                problems.append(f"{source}:{line}: {shown}: YAML does not read this key as text "
                                "(a bare on/off/yes/no or a number?); quote it")
                continue
            if key in seen:
                # PyYAML silently keeps the last of duplicate keys, which would drop half a section.
                problems.append(f"{source}:{line}: {dotted_path((*path, key))}: duplicate key")
                continue
            seen.add(key)
            _walk(value_node, (*path, key), lines, keys, problems, source)
            lines[(*path, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, keys, problems, source)


def dotted_path(loc: Path_) -> str:
    """("datacenters", 0, "name") -> "datacenters[0].name"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
