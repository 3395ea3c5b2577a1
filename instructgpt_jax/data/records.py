"""Record streams shared by the readers of formats.py and benchmarks.py: JSONL lines and validated fields.

Every error is a DataError whose message starts with "file:line: field 'name':", so the fix is one click away.
"""

from __future__ import annotations

import json

# Path prefixes that name a public dataset's own layout (`tldr:PATH`, `hh:PATH`), read by data/benchmarks.py;
# their records carry "meta" (TL;DR's worker, batch, ...), which read_rm and read_sft keep.
BENCHMARK_PREFIXES = ("tldr:", "hh:")


class DataError(ValueError):
    """A bad record: the message starts with "file:line: field 'name':" so the fix is one click away."""

    def __init__(self, where: str, field: str | None, message: str):
        self.where, self.field = where, field
        super().__init__(f"{where}: field {field!r}: {message}" if field else f"{where}: {message}")


def jsonl_records(path: str):
    """(location, record) per non-blank line; bytes that are not UTF-8 survive as surrogates for string_field."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(raw.rstrip(b"\r\n").decode("utf-8", errors="surrogateescape"))
            except json.JSONDecodeError as e:
                raise DataError(where, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise DataError(where, None, f"expected a JSON object, got {type(record).__name__}")
            yield where, record


def string_field(where: str, record: dict, field: str) -> str:
    """The non-empty, valid UTF-8 string in `record[field]`."""
    if field not in record:
        raise DataError(where, field, "missing")
    value = record[field]
    if not isinstance(value, str):
        raise DataError(where, field, f"expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(where, field, "not valid UTF-8") from None
    if not value.strip():
        raise DataError(where, field, "empty")
    return value
