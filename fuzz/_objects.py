"""Strategies for single PDF objects, as model values of `fuzz._syntax`.

Runs in the test process or a fuzz driver. Valid syntax only, but in every spelling the
standard allows: names with #xx escapes, literal strings with escapes, octal codes, line
continuations and balanced parentheses, hex strings with odd digit counts and whitespace,
numbers with signs, leading zeros, leading or trailing points.
"""
from __future__ import annotations

from hypothesis import strategies as st

from fuzz._syntax import NAME_PLAIN, HexString, Name, Raw, Ref, literal_string

names = st.builds(Name, st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=0, max_size=12))
# Regular characters written as #xx anyway: legal, and a classic source of reader bugs.
# (#00 is not allowed in a name, hence bytes from 1.)
escaped_names = st.lists(st.integers(1, 255), min_size=1, max_size=8).map(
    lambda raw: Raw(b"/" + b"".join(b"#%02X" % c if c not in NAME_PLAIN or c % 3 == 0 else bytes([c]) for c in raw)))


@st.composite
def odd_numbers(draw) -> Raw:
    value = draw(st.integers(0, 10**6))
    form = draw(st.sampled_from(["+{}", "-{}", "00{}", "{}.", ".{}", "-.{}", "+{}.0", "{}.000000"]))
    return Raw(form.format(value).encode())


@st.composite
def literal_strings(draw) -> bytes | Raw:
    data = draw(st.binary(max_size=24))
    form = draw(st.sampled_from(["plain", "balanced", "octal", "continued", "escapes"]))
    if form == "plain":
        return data  # the serialiser escapes what must be escaped
    if form == "balanced":  # unescaped but balanced parentheses are legal
        inner = literal_string(data)[1:-1]
        return Raw(b"(" + inner + b"(" + inner + b")" + b"(()())" + b")")
    if form == "octal":  # \ddd with one to three digits
        return Raw(b"(" + b"".join(b"\\%o" % c if c % 2 else b"\\%03o" % c for c in data) + b")")
    if form == "continued":  # backslash-EOL is a line continuation, not content
        # split between two bytes' escapes, never inside one (b"\\(" cut after its
        # backslash read back as an escaped backslash and an unclosed string)
        half = len(data) // 2
        head, tail = literal_string(data[:half])[1:-1], literal_string(data[half:])[1:-1]
        return Raw(b"(" + head + b"\\\n" + tail + b")")
    return Raw(b"(" + b"\\n\\r\\t\\b\\f\\(\\)\\\\" + literal_string(data)[1:-1] + b"\\q)")  # \q: unknown, backslash dropped


@st.composite
def hex_strings(draw) -> HexString | Raw:
    data = draw(st.binary(max_size=24))
    form = draw(st.sampled_from(["plain", "odd", "spaced", "lower"]))
    if form == "plain":
        return HexString(data)
    digits = data.hex().encode()
    if form == "odd":  # an odd count means a final 0 is implied
        return Raw(b"<" + digits + b"A>")
    if form == "spaced":
        return Raw(b"< " + b" \n".join(digits[i : i + 3] for i in range(0, len(digits), 3)) + b" >")
    return Raw(b"<" + digits.lower() + b">")


references = st.builds(Ref, st.integers(1, 40), st.integers(0, 3))

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    odd_numbers(), literal_strings(), hex_strings(), names, escaped_names,
)


def objects(*, max_leaves: int = 12, with_references: bool = True) -> st.SearchStrategy:
    leaves = st.one_of(scalars, references) if with_references else scalars
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8),
                            children, max_size=5),
        ),
        max_leaves=max_leaves,
    )
