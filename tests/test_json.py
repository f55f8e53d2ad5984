"""Reading JSON bytes: one rule for what can go wrong, worded by the control API and the state file."""
from __future__ import annotations

import pytest

from meter_simulator.checks import JsonProblem, json_document
from meter_simulator.http.api import body_problem
from meter_simulator.ops.state import file_problem

DEEP = b"[" * 100_000 + b"]" * 100_000
LONG = b"1" * 5000  # past Python's int_max_str_digits (4300) where it has one

CASES = [  # bytes, kind, the API's words, the state file's words
    (b"\xff{}", "utf8", "the body is not UTF-8", "not a state file (not UTF-8 text)"),
    (b'{"a": }', "syntax", "bad JSON: Expecting value at line 1 column 7",
     "not valid JSON, truncated or corrupt (Expecting value: line 1 column 7)"),
    (DEEP, "depth", "bad JSON: nested too deeply", "not a state file (nested too deeply)"),
]


@pytest.mark.parametrize("data, kind, api_words, file_words", CASES, ids=[case[1] for case in CASES])
def test_each_problem_has_its_kind_and_each_reader_its_words(data, kind, api_words, file_words):
    with pytest.raises(JsonProblem) as caught:
        json_document(data)
    assert caught.value.kind == kind
    assert body_problem(caught.value) == api_words
    assert file_problem(caught.value) == file_words


def test_an_integer_too_long_to_convert_is_its_own_kind_where_python_limits_it():
    try:
        document = json_document(LONG)
    except JsonProblem as problem:  # Python 3.11+ (and patched 3.9/3.10): int_max_str_digits
        assert problem.kind == "digits"
        assert body_problem(problem) == "bad JSON: a number with too many digits"
        assert file_problem(problem) == "not a state file (an integer of more digits than can be read)"
    else:
        assert document == int(LONG)


def test_a_document_is_read_whole():
    assert json_document(b'{"online": false, "total": 12.5}') == {"online": False, "total": 12.5}
