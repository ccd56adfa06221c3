"""Typed reads of cfg values: Python 2's int()/float(), bool words, comma lists (driver.md §A.1)."""

from __future__ import annotations

import math

import pytest

from alexnet_replay.errors import ConfigError
from alexnet_replay.original.cfgfile import parse_cfg_text
from alexnet_replay.original.values import Reader, lenient_bool, py2_bool, py2_float, py2_int

NAME = "v.cfg"


def reader(*lines: str) -> Reader:
    return Reader(parse_cfg_text("\n".join(lines) + "\n", NAME))


def config_error(fn, *, line: int, section: str, key: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn()
    exc = info.value
    assert type(exc) is ConfigError
    assert (exc.file, exc.line, exc.section, exc.key) == (NAME, line, section, key)
    assert str(exc).startswith(f"{NAME}: line {line}: [{section}] key '{key}': ")
    return exc


# -- int ---------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    (" 4 ", 4), ("4", 4), ("-2", -2), ("+3", 3), ("0004", 4), ("-0", 0),
    ("\t7\x0b", 7),        # ASCII whitespace (tab, vertical tab) around the digits
    ("- 2", -2),           # Python 2's int() skipped whitespace after the sign too
    ("+\t3", 3),
    ("12345678901234567890", 12345678901234567890),  # no 32-bit limit (became a long)
])
def test_py2_int_accepts(text, value):
    got = py2_int(text)
    assert got == value and type(got) is int


@pytest.mark.parametrize("text", [
    "4.0", "1_000", "0x10", "", " ", "4L", "1e3", "--2", "+-2", "4 2", "four",
    "\xa04",               # no-break space is not whitespace to Python 2
    "\u0664",              # Python 3's int() takes non-ASCII digits; bytes had none
])
def test_py2_int_rejects(text):
    with pytest.raises(ValueError):
        py2_int(text)


# -- float -------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), (".5", 0.5), (" 2 ", 2.0), ("1.", 1.0), ("-.5e-2", -0.005), ("1E3", 1000.0),
    ("+7", 7.0), ("inf", math.inf), ("-inf", -math.inf), ("Infinity", math.inf), ("iNf", math.inf),
])
def test_py2_float_accepts(text, value):
    assert py2_float(text) == value


@pytest.mark.parametrize("text", ["nan", "NaN", "+nan", " nan "])
def test_py2_float_accepts_nan(text):
    assert math.isnan(py2_float(text))


@pytest.mark.parametrize("text", [
    "1_0", "1.2.3", "", " ", ".", "e5", "1e", "1e+", "0x10", "- 2", "1 e3", "infinit", "1.5L",
    "\xa01", "1,5",
])
def test_py2_float_rejects(text):
    with pytest.raises(ValueError):
        py2_float(text)


# -- bool --------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1", "yes", "true", "on", "YES", "True", "On"])
def test_bool_true_words(text):
    assert py2_bool(text) is True


@pytest.mark.parametrize("text", ["0", "no", "false", "off", "NO", "False", "OFF"])
def test_bool_false_words(text):
    assert py2_bool(text) is False


@pytest.mark.parametrize("text", ["2", "y", "n", "t", "", "yess", "enabled", "-1"])
def test_bool_other_words_are_errors(text):
    with pytest.raises(ValueError):
        py2_bool(text)


@pytest.mark.parametrize("text, value", [
    ("true", True), ("TRUE", True), (" True ", True), ("1", True),
    ("yes", False), ("on", False), ("0", False), ("", False), ("2", False), ("t", False),
    ("true\x0c", True),     # form feed is ASCII whitespace
    ("\xa0true", False),    # no-break space is not
])
def test_lenient_bool_item_is_true_only_for_true_or_1(text, value):
    assert lenient_bool(text) is value


# -- Reader: typed keys with errors that say where ----------------------------
def test_reader_scalars_and_defaults():
    r = reader("[conv1]", "filters = 16", "initB=-1.5", "shared=yes", "name= conv one ")
    assert r.int("conv1", "filters") == 16
    assert r.float("conv1", "initb") == -1.5
    assert r.bool("conv1", "SHARED") is True
    assert r.text("conv1", "name") == "conv one"
    assert r.int("conv1", "padding", 0) == 0
    assert r.bool("conv1", "blocked", False) is False


def test_reader_int_error_names_file_line_section_key_and_text():
    r = reader("[conv1]", "type=conv", "filters=4.0")
    exc = config_error(lambda: r.int("conv1", "filters"), line=3, section="conv1", key="filters")
    assert exc.reason == "must be an int (got '4.0')"


def test_reader_float_and_bool_errors():
    r = reader("[n]", "scale=1,5", "blocked=maybe")
    exc = config_error(lambda: r.float("n", "scale"), line=2, section="n", key="scale")
    assert "must be a float" in exc.reason and "'1,5'" in exc.reason
    exc = config_error(lambda: r.bool("n", "blocked"), line=3, section="n", key="blocked")
    assert "must be a bool" in exc.reason and "'maybe'" in exc.reason


def test_reader_required_key_missing_points_at_the_header():
    r = reader("# x", "[pool1]", "type=pool")
    exc = config_error(lambda: r.int("pool1", "sizeX"), line=2, section="pool1", key="sizeX")
    assert exc.reason == "required parameter 'sizeX' missing"


def test_reader_errors_quote_the_key_as_the_file_spells_it():
    r = reader("[conv1]", "FilterSize=4.0")
    exc = config_error(lambda: r.int("conv1", "filterSize"), line=2, section="conv1", key="FilterSize")
    assert exc.reason == "must be an int (got '4.0')"


def test_reader_lists():
    r = reader("[c]", "channels= 3 , 16,4", "initW=0.01,1e-3", "names= a , b ", "sparse=true,yes,1,0,TRUE")
    assert r.int_list("c", "channels") == [3, 16, 4]
    assert r.float_list("c", "initw") == [0.01, 0.001]
    assert r.text_list("c", "names") == ["a", "b"]
    # a bool list is lenient: only 'true' and '1' (any case) are true, nothing is an error
    assert r.bool_list("c", "sparse") == [True, False, True, False, True]
    # a missing key gives the default, whose length is not checked against anything
    assert r.int_list("c", "padding", [0, 0], length=2) == [0, 0]


@pytest.mark.parametrize("text", ["1,,2", "1,2.5", "", "1;2"])
def test_reader_int_list_error(text):
    r = reader("[c]", f"filters={text}")
    exc = config_error(lambda: r.int_list("c", "filters"), line=2, section="c", key="filters")
    assert "must be a ','-delimited list of ints" in exc.reason


def test_reader_list_length_mismatch_message():
    r = reader("[conv3]", "inputs=a,b", "padding=1,1,1")
    exc = config_error(lambda: r.int_list("conv3", "padding", [0, 0], length=2),
                       line=3, section="conv3", key="padding")
    assert exc.reason == ("list has 3 entries but the layer has 2 inputs "
                          "('padding' list length does not match number of inputs)")
    # one entry for two inputs is just as wrong
    r = reader("[conv3]", "padding=1")
    exc = config_error(lambda: r.int_list("conv3", "padding", length=2), line=2, section="conv3",
                       key="padding")
    assert "list has 1 entries but the layer has 2 inputs" in exc.reason


def test_list_items_are_stripped_of_ascii_whitespace_only():
    r = reader("[c]", "channels=3,\t16\x0b", "bad=3,\xa016", "flags=\xa0true,true\x0b, 1")
    assert r.int_list("c", "channels") == [3, 16]
    config_error(lambda: r.int_list("c", "bad"), line=3, section="c", key="bad")
    assert r.bool_list("c", "flags") == [False, True, True]
    assert r.text_list("c", "bad") == ["3", "\xa016"]


def test_reader_sees_default_section_and_interpolates():
    r = reader("[DEFAULT]", "eps=0.01", "[fc]", "epsW=%(eps)s,%(eps)s")
    assert r.has("fc", "eps")
    assert r.float_list("fc", "epsw", length=2) == [0.01, 0.01]
    assert not r.has("nosuch", "eps")
