"""Map files: a register map in TOML (or JSON, the same structure), read and checked whole before
anything is served, then turned into a points.Profile.

Every problem is a MapError: one line naming the file, the entry and the problem, as in
'profile mine.toml: register 3 (address 20): unknown quantity "frequencyy"'. The keys of an
entry and their checks are the schema's (schema.py).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..checks import is_integer
from ..model.meters import METER_TYPES
from . import points
from .schema import SITE_TYPES, EntryChecks, MapError, check_overlaps, linked_scales, show, unknown

TOP_KEYS = ("name", "type", "word_order", "write_functions", "block", "register")
BLOCK_KEYS = ("space", "start", "end")
WRITE_FUNCTIONS = (0x06, 0x10)
MAP_TYPES = (*METER_TYPES, *SITE_TYPES)  # the types a built-in map may have; a user's: METER_TYPES
# Reading and compiling a map costs time and memory by its entries (measured, one-register
# entries: 1,000 take 0.1 s and 10 MB at the peak, 10,000 0.75 s and 88 MB, 65,536 8.5 s and
# 579 MB); the largest real maps, SunSpec chains, hold a few hundred. A file is refused past
# MAX_FILE_BYTES before it is parsed, and past MAX_POINTS entries before any is checked.
MAX_POINTS = 10_000
MAX_FILE_BYTES = 4 * 2**20  # 400 bytes an entry at MAX_POINTS; the built-in maps take 150
TOO_MANY_DIGITS = "an integer of more digits than can be read"


def toml_parser():
    """The standard TOML parser (tomllib), or on Python 3.9 and 3.10 its backport tomli. Imported
    when a file is read: it loads datetime (TOML has dates), which importing the core must not."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, as a backport
        import tomli as tomllib
    return tomllib


def load_map(path: str | os.PathLike, meter_type: str | None = None,
             types: tuple[str, ...] = METER_TYPES) -> points.Profile:
    """The profile of the map file at path (.json: JSON, anything else: TOML), checked whole.

    meter_type is --type when the user gave it: a file that names another type is refused, and so
    is a type not among types (a site's inverter map: the built-in maps' MAP_TYPES only)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # a bigger file is refused unread
    except OSError as exc:
        raise MapError(f"profile {path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise MapError(f"profile {path}: larger than {MAX_FILE_BYTES // 2**20} MiB, too large for a map "
                       f"(at most {MAX_POINTS:,} registers)")
    try:
        text = data.decode("utf-8-sig")  # a BOM, as some editors write, is not an error
    except UnicodeDecodeError as exc:
        raise MapError(f"profile {path}: cannot read it: not UTF-8 text (byte {exc.start})") from None
    return parse(document_of(text, path), path, meter_type, types)


def document_of(text: str, path: str) -> Any:
    """The parsed file: JSON for a .json file, else TOML; MapError naming the problem (and the
    line where the parser gives one) otherwise."""
    language = "JSON" if path.lower().endswith(".json") else "TOML"
    tomllib = toml_parser() if language == "TOML" else None
    try:
        if tomllib is None:
            return json.loads(text, object_pairs_hook=_unique_keys)
        return tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise MapError(f"profile {path}: invalid JSON: {exc.msg} (at line {exc.lineno}, "
                       f"column {exc.colno})") from None
    except _DuplicateKey as exc:
        raise MapError(f"profile {path}: invalid JSON: key {show(str(exc))} given twice") from None
    except RecursionError:  # [[[[...]]]] deeper than the parser's recursion
        raise MapError(f"profile {path}: invalid {language}: nested too deeply") from None
    except ValueError as exc:
        if tomllib is not None and isinstance(exc, tomllib.TOMLDecodeError):
            raise MapError(f"profile {path}: invalid TOML: {exc}") from None
        # int() past sys.get_int_max_str_digits(), in words of our own: Python's vary by version
        raise MapError(f"profile {path}: invalid {language}: {TOO_MANY_DIGITS}") from None


def parse(document: Any, source: str, meter_type: str | None = None,
          types: tuple[str, ...] = METER_TYPES) -> points.Profile:
    """The profile a parsed map document describes; source names it in errors and is its default name."""
    parser = _Parser(source)
    try:
        return parser.profile(document, meter_type, types)
    except RecursionError:  # a value nested almost as deep as the parser allows, shown in a message
        raise parser.fail("a value is nested too deeply") from None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _Parser(EntryChecks):
    """Checks one document: its top-level keys, blocks and register entries."""

    def profile(self, document: Any, meter_type: str | None, types: tuple[str, ...]) -> points.Profile:
        if not isinstance(document, dict):
            raise self.fail("the file must hold a table of keys at the top")
        for key in document:
            if key not in TOP_KEYS:
                raise self.fail(unknown("top-level key", key, TOP_KEYS))
        registers = document.get("register")
        if isinstance(registers, list) and len(registers) > MAX_POINTS:  # before checking any of them
            raise self.fail(f"{len(registers):,} registers: a map holds at most {MAX_POINTS:,}")
        name = document.get("name", Path(self.source).stem)
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise self.fail(f"name {show(name)} is not a one-line text")
        file_type = document.get("type")
        if file_type is not None and file_type not in types:
            raise self.fail(unknown("type", file_type, types))
        if file_type is not None and meter_type is not None and file_type != meter_type:
            raise self.fail(f"type {show(file_type)} does not match --type {meter_type}")
        word_order = self.word_order(document.get("word_order", "big"))
        write_functions = self.write_functions(document.get("write_functions", list(WRITE_FUNCTIONS)))
        blocks = tuple(self.block(number, entry)
                       for number, entry in enumerate(self.tables(document, "block"), 1))
        self.where = ""
        entries = self.tables(document, "register")
        if not entries:
            raise self.fail("no registers: a map needs at least one [[register]]")
        found = tuple(self.point(number, entry, word_order, file_type)
                      for number, entry in enumerate(entries, 1))
        self.where = ""
        check_overlaps(found, self.fail)
        found = linked_scales(found, self.fail)
        return points.Profile(name=name, meter_type=file_type, points=found, blocks=blocks,
                              word_order=word_order, write_functions=write_functions, source=self.source)

    def tables(self, document: dict, key: str) -> list[dict]:
        entries = document.get(key, [])
        if not isinstance(entries, list):
            raise self.fail(f"{key} must be a list of tables ([[{key}]])")
        for number, entry in enumerate(entries, 1):
            if not isinstance(entry, dict):
                raise self.fail(f"{key} {number}: {show(entry)} is not a table")
        return entries

    def write_functions(self, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not all(is_integer(code) and code in WRITE_FUNCTIONS
                                                  for code in value):
            raise self.fail(f"write_functions {show(value)} is not a list of 6 and 16 (FC 0x06, 0x10)")
        return tuple(sorted(set(value)))

    def block(self, number: int, entry: dict) -> points.Block:
        self.where = f"block {number}: "
        for key in entry:
            if key not in BLOCK_KEYS:
                raise self.fail(unknown("key", key, BLOCK_KEYS))
        for key in ("start", "end"):
            if key not in entry:
                raise self.fail(f"{key} missing")
        space = self.space(entry.get("space", "holding"))
        start = self.address("start", entry["start"])
        end = self.address("end", entry["end"])
        if start > end:
            raise self.fail(f"start {start} is after end {end}")
        return points.Block(space=space, start=start, end=end)
