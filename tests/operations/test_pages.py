"""Page selection syntax: parsing (server side) and resolution (child side)."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from notrace.operations.pages import (SELECTION_PATTERN, PageRangeError, SelectionTooLarge,
                                      parse_pages, parse_ranges)
from notrace.operations.spec import ParamError


@pytest.mark.parametrize("text, count, expected", [
    ("1,3,5-9", 9, [1, 3, 5, 6, 7, 8, 9]),
    ("all", 4, [1, 2, 3, 4]),
    ("-1", 9, [9]),
    ("-2", 9, [8]),
    ("odd", 5, [1, 3, 5]),
    ("even", 5, [2, 4]),
    ("even", 1, []),
    ("4-", 6, [4, 5, 6]),
    ("3,1,1", 3, [3, 1, 1]),
    ("9-7", 9, [9, 8, 7]),
    ("-3--1", 5, [3, 4, 5]),
    ("-2-", 5, [4, 5]),
    (" 1 , 2 ", 2, [1, 2]),
    ("6-6", 6, [6]),
])
def test_resolve(text, count, expected):
    assert [i + 1 for i in parse_pages(text).resolve(count)] == expected


@pytest.mark.parametrize("text, message", [
    ("5-x", 'pages: "5-x" is not a page or range'),
    ("", "pages: is empty"),
    ("   ", "pages: is empty"),
    ("1,,2", "pages: has an empty part"),
    ("1,", "pages: has an empty part"),
    ("0", 'pages: "0": page 0 does not exist (pages count from 1)'),
    ("2-0", 'pages: "2-0": page 0 does not exist (pages count from 1)'),
    ("1234567890", 'pages: "1234567890" names a page number that is too large'),
    ("ALL", 'pages: "ALL" is not a page or range'),
    ("1-2-3", 'pages: "1-2-3" is not a page or range'),
    ("--1", 'pages: "--1" is not a page or range'),
    ("1.5", 'pages: "1.5" is not a page or range'),
    ("1\t2", 'pages: "1\\t2" is not a page or range'),
    ("²", 'pages: "\\u00b2" is not a page or range'),
    ("-", 'pages: "-" is not a page or range'),
])
def test_parse_errors_name_the_part(text, message):
    with pytest.raises(ParamError) as caught:
        parse_pages(text)
    assert str(caught.value) == message
    assert caught.value.param == "pages"


@pytest.mark.parametrize("text, count, message", [
    ("12", 9, "pages: page 12 is beyond the last page (9)"),
    ("1-12", 9, "pages: page 12 is beyond the last page (9)"),
    ("10-", 9, "pages: page 10 is beyond the last page (9)"),
    ("-10", 9, "pages: page -10 is before the first page (the document has 9 pages)"),
])
def test_resolve_errors_name_the_page(text, count, message):
    with pytest.raises(PageRangeError) as caught:
        parse_pages(text).resolve(count)
    assert str(caught.value) == message


def test_limit_and_groups():
    with pytest.raises(SelectionTooLarge):
        parse_pages("1-,1-").resolve(6, limit=10)
    assert parse_pages("1-,1-").resolve(5, limit=10) == list(range(5)) * 2
    assert parse_ranges("1-3,4-6,-1").resolve_groups(7) == [[0, 1, 2], [3, 4, 5], [6]]
    assert parse_ranges("1-3", param="ranges").param == "ranges"
    assert parse_pages("odd,1").resolve_set(4) == {0, 2}


def test_long_text_is_cheap():
    # 1024 characters of "1-," is the most a form value holds; resolving stays bounded.
    text = ",".join(["1-"] * 341)
    with pytest.raises(SelectionTooLarge):
        parse_pages(text).resolve(1000, limit=1000)


_parts = st.one_of(
    st.sampled_from(["all", "odd", "even"]),
    st.builds(lambda a, b, form: form.format(a=a, b=b),
              st.integers(-999, 999).filter(bool), st.integers(-999, 999).filter(bool),
              st.sampled_from(["{a}", "{a}-{b}", "{a}-"])))


# The same examples every run (a fresh CI machine finds what this one found) and no
# per-example deadline: a loaded 2-core machine may take over 200 ms for one parse.
@settings(deadline=None, derandomize=True)
@given(st.lists(_parts, min_size=1, max_size=8))
def test_canonical_text_round_trips(parts):
    selection = parse_pages(",".join(parts))
    assert parse_pages(selection.text) == selection
    assert re.fullmatch(SELECTION_PATTERN, selection.text)


@settings(deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789-, aloddevn", max_size=20))
def test_pattern_agrees_with_parser(text):
    """The JSON Schema pattern accepts exactly what the parser accepts."""
    try:
        parse_pages(text)
        accepted = True
    except ParamError:
        accepted = False
    assert accepted == bool(re.fullmatch(SELECTION_PATTERN, text))
