import pytest
from hypothesis import given, strategies as st

from anomalyvae.data.classes import format_classes, parse_classes
from anomalyvae.errors import AnomalyVAEError


@pytest.mark.parametrize("spec, expected", [
    ("0-8", list(range(9))), ("0,2,4", [0, 2, 4]), ("3", [3]), ("1-3,7", [1, 2, 3, 7]),
    (" 1 - 3 , 7 ", [1, 2, 3, 7]), ("7,1-3,2", [1, 2, 3, 7]),
    ("all", list(range(10))), (" ALL ", list(range(10))), ("0-9", list(range(10))), ("0-4,5-9", list(range(10))),
])
def test_valid_specs_give_sorted_classes(spec, expected):
    assert parse_classes(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("", "empty"), ("   ", "empty"), ("10", "out of range"), ("0-10", "out of range"),
    ("5-3", "backwards"), ("all,3", "cannot read"), ("a", "cannot read"), ("1,,2", "cannot read"), ("-1", "cannot read"),
])
def test_bad_specs_are_clear_errors(spec, words):
    with pytest.raises(AnomalyVAEError, match=words):
        parse_classes(spec)


def test_format_is_the_inverse_of_parse():
    assert format_classes([0, 1, 2, 3, 7]) == "0-3,7"
    assert format_classes([5]) == "5"


@given(st.text(max_size=30))
def test_random_text_never_crashes_with_anything_but_our_error(text):
    try:
        classes = parse_classes(text)
    except AnomalyVAEError:
        return
    assert classes and len(classes) <= 10 and all(0 <= c <= 9 for c in classes)


@given(st.sets(st.integers(0, 9), min_size=1, max_size=10))
def test_any_subset_round_trips(classes):
    assert parse_classes(format_classes(sorted(classes))) == sorted(classes)


_pad = st.sampled_from(["", " ", "  ", "\t"])
_part = st.tuples(st.integers(0, 12), st.one_of(st.none(), st.integers(0, 12)), _pad)


@given(st.lists(_part, min_size=1, max_size=4))
def test_specs_written_in_the_grammar_give_the_union_or_the_first_problem(parts):
    spec = ",".join(f"{p}{lo}{p}" if hi is None else f"{p}{lo}{p}-{p}{hi}{p}" for lo, hi, p in parts)
    expected, problem = set(), None
    for lo, hi, _ in parts:
        hi = lo if hi is None else hi
        if lo > hi:
            problem = "backwards"
        elif hi > 9:
            problem = "out of range"
        if problem:
            break
        expected.update(range(lo, hi + 1))
    if problem:
        with pytest.raises(AnomalyVAEError, match=problem):
            parse_classes(spec)
    else:
        assert parse_classes(spec) == sorted(expected)
