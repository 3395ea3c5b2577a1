"""What `instructgpt <command> --help` prints: the command's example, its config file's docstring, every config
key with its default and meaning, and its flags.

The meanings are the config files' own comments, found with `ast` and `tokenize`, so a key is documented in
one place: the comment on the line that sets it (with its continuation lines), else the comment block just
above a line that sets one key. A section built by a config_base.py helper (`train_config(...)`) or loaded
from another config file (`load_config("configs/sft.py:...")`, as the pipeline embeds each stage) takes its
keys' meanings from there first.
"""

from __future__ import annotations

import ast
import io
import os
import re
import textwrap
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_BASE = os.path.join(ROOT, "instructgpt_jax", "config_base.py")


def _comments(source: str) -> tuple[dict, dict]:
    """({line: (column, text)} of comments after code, the same of lines that hold only a comment)."""
    trailing, alone = {}, {}
    code_lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if tok.start[0] in code_lines:
                trailing[tok.start[0]] = (tok.start[1], text)
            else:
                alone[tok.start[0]] = (tok.start[1], text)
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return trailing, alone


def _meaning(line: int, trailing: dict, alone: dict, first_on_line: bool) -> str:
    """The comment beside `line` and its aligned continuation; else, for the line's first key, the block above."""
    if line in trailing:
        col, text = trailing[line]
        parts, nxt = [text], line + 1
        while nxt in alone and alone[nxt][0] == col:  # a continuation aligned under the comment
            parts.append(alone[nxt][1])
            nxt += 1
        return " ".join(parts)
    if not first_on_line:
        return ""
    parts, above = [], line - 1
    while above in alone and not _continues(above, trailing, alone):
        parts.insert(0, alone[above][1])
        above -= 1
    return " ".join(parts)


def _continues(line: int, trailing: dict, alone: dict) -> bool:
    """Whether a comment-only line continues the comment of a line of code above it (aligned under it)."""
    col = alone[line][0]
    while line - 1 in alone and alone[line - 1][0] == col:
        line -= 1
    return line - 1 in trailing and trailing[line - 1][0] == col


def _dotted(node) -> str | None:
    """'a.b' for the expression `config.a.b`; None for anything else."""
    names = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    return ".".join(names) if isinstance(node, ast.Name) and node.id == "config" and names else None


def _string_arg(call: ast.Call) -> str | None:
    """The leading string constant of a call's first argument (`"configs/sft.py:" + arg` -> 'configs/sft.py:')."""
    arg = call.args[0] if call.args else None
    while isinstance(arg, ast.BinOp):
        arg = arg.left
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def key_comments(path: str, _seen: frozenset = frozenset()) -> dict[str, str]:
    """{dotted key: meaning} of a config file, keys in the order the file first sets them."""
    with open(path) as f:
        source = f.read()
    trailing, alone = _comments(source)
    helpers = _helper_comments() if os.path.abspath(path) != CONFIG_BASE else {}
    sites: list[tuple[str, int, dict | None]] = []  # (key, line, a section's meanings or None), in source order

    def value_keys(key: str, value, line: int) -> None:
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    value_keys(f"{key}.{k.value}", v, k.lineno)
            return
        if isinstance(value, ast.Call):
            fn = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", "")
            if fn == "ConfigDict" and value.args and isinstance(value.args[0], ast.Dict):
                return value_keys(key, value.args[0], line)
            if fn in helpers:
                sites.append((key, line, helpers[fn]))
                sites.extend((f"{key}.{kw.arg}", kw.value.lineno, None) for kw in value.keywords if kw.arg)
                return
            spec = _string_arg(value) if fn == "load_config" else None
            file = os.path.join(ROOT, spec.partition(":")[0]) if spec else ""
            if os.path.isfile(file) and file not in _seen:
                sites.append((key, line, key_comments(file, _seen | {os.path.abspath(path)})))
                return
        sites.append((key, line, None))

    nodes = (n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Assign, ast.Expr)))
    for node in sorted(nodes, key=lambda n: n.lineno):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if key := _dotted(target):
                    value_keys(key, node.value, target.lineno)
        elif (isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
              and node.value.func.attr == "update" and node.value.args and isinstance(node.value.args[0], ast.Dict)):
            if key := _dotted(node.value.func.value):
                value_keys(key, node.value.args[0], node.lineno)
    out: dict[str, str] = {}
    lines_seen: set[int] = set()
    on_line: dict[int, list] = {}
    for key, line, _ in sites:
        on_line.setdefault(line, []).append(key.rsplit(".", 1)[-1])
    for key, line, section in sites:
        if section is not None:  # the definition's meaning wins over a comment where the value is set
            for k, meaning in section.items():
                out[f"{key}.{k}"] = meaning or out.get(f"{key}.{k}", "")
            continue
        meaning = _meaning(line, trailing, alone, line not in lines_seen)
        lines_seen.add(line)
        named = re.match(r"(\w+): ", meaning)  # "base: ..." beside `"val_batches": 8, "base": True` is base's
        if named and named.group(1) != key.rsplit(".", 1)[-1] and named.group(1) in on_line.get(line, ()):
            meaning = ""
        if not out.get(key):
            out[key] = meaning
    return out


def _helper_comments() -> dict[str, dict]:
    """{config_base function: {key: meaning}} for the sections every stage config shares."""
    with open(CONFIG_BASE) as f:
        source = f.read()
    trailing, alone = _comments(source)
    out = {}
    for fn in ast.parse(source).body:
        if isinstance(fn, ast.FunctionDef) and fn.name.endswith("_config"):
            keys, seen = {}, set()
            for node in ast.walk(fn):
                if isinstance(node, ast.Dict):
                    for k in node.keys:
                        if isinstance(k, ast.Constant) and isinstance(k.value, str):
                            keys[k.value] = _meaning(k.lineno, trailing, alone, k.lineno not in seen)
                            seen.add(k.lineno)
            if keys:
                out[fn.name] = keys
    return out


def _short(text: str, width: int = 110) -> str:
    """One line: the text, or its first sentence, at most `width` characters."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > width and (end := text.find(". ")) > 0:
        text = text[:end + 1]
    return text if len(text) <= width else text[:width - 4].rsplit(" ", 1)[0] + " ..."


def _flat(config) -> dict:
    out = {}
    for key, value in config.items():
        if hasattr(value, "items") and not isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in _flat(value).items()})
        else:
            out[key] = value
    return out


def config_help(spec: str, config) -> str:
    """The docstring of the config file of `spec` and a line per key: `key = default   meaning`."""
    path = spec.partition(":")[0]
    path = path if os.path.exists(path) else os.path.join(ROOT, path)  # as config_base.load_config finds it
    meanings = key_comments(path)
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    values = _flat(config)
    order = [k for k in meanings if k in values] + sorted(k for k in values if k not in meanings)
    rows = [(f"{k} = {_value(values[k])}", _short(meanings.get(k, ""))) for k in order]
    width = min(max(len(a) for a, _ in rows), 48)
    lines = [f"  {a:<{width}}  {b}".rstrip() if len(a) <= width else f"  {a}\n  {'':<{width}}  {b}".rstrip()
             for a, b in rows]
    return (f"{spec}:\n{textwrap.indent(doc, '  ')}\n\nConfig keys (override any with --config.KEY=VALUE; "
            "nested keys with dots):\n" + "\n".join(lines))


def _value(value) -> str:
    text = repr(tuple(value) if isinstance(value, list) else value)
    return text if len(text) <= 40 else text[:36] + " ..."
