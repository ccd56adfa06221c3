"""The cfg reader against the Python 2.7 ``SafeConfigParser`` rules (driver.md §A.1).

Every input is a tiny invented text. The expected values are worked out from the
rules as the spec and the cfgfile.py docstring state them; the comment beside a
case says which rule gives the answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alexnet_replay.errors import ConfigError, ReplayError
from alexnet_replay.original.cfgfile import parse_cfg_text, read_cfg

NAME = "t.cfg"


def cfg(*lines: str):
    """Parse the given lines (joined with "\\n", so trailing blanks stay visible)."""
    return parse_cfg_text("\n".join(lines) + "\n", NAME)


def section(c, name: str) -> dict[str, str]:
    """Every key of a section (defaults included) with its interpolated value."""
    return {k: c.get(name, k) for k in c.keys(name)}


def raises_config_error(fn, *, line=None, section_=None, key=None) -> ConfigError:
    """Call `fn`; it must raise exactly ConfigError naming this file and the given place."""
    with pytest.raises(ConfigError) as info:
        fn()
    exc = info.value
    assert type(exc) is ConfigError
    assert exc.file == NAME and str(exc).startswith(f"{NAME}: ")
    assert exc.line == line
    if line is not None:
        assert f": line {line}: " in str(exc)
    assert exc.section == section_
    if section_ is not None:
        assert f"[{section_}]" in str(exc)
    assert exc.key == key
    if key is not None:
        assert f"key '{key}'" in str(exc)
    return exc


# -- sections and keys -------------------------------------------------------
def test_keys_are_case_insensitive_and_lower_cased():
    c = cfg("[conv1]", "FilterSize=5", "FILTERS=16", "filters=32")
    # FILTERS and filters are one key; the later line wins.
    assert c.keys("conv1") == ["filtersize", "filters"]
    assert c.get("conv1", "filtersize") == "5"
    assert c.get("conv1", "FILTERSIZE") == "5"
    assert c.get("conv1", "FiLtErS") == "32"
    assert c.has_option("conv1", "filterSize")
    assert c.line_of("conv1", "Filters") == 4


def test_section_names_are_case_sensitive_and_kept_in_file_order():
    c = cfg("[conv1]", "a=1", "[Conv1]", "a=2", "[CONV1]", "a=3")
    assert c.section_names() == ["conv1", "Conv1", "CONV1"]
    assert [c.get(s, "a") for s in c.section_names()] == ["1", "2", "3"]
    assert not c.has_section("conv2")


def test_text_after_the_closing_bracket_is_ignored():
    c = cfg("[conv1] here is noise ; x=1", "a=1",
            "[b]c]", "d=2",         # [^]]+ stops at the first ']': the name is 'b'
            "[ spaced ]", "e=3")    # the name is not stripped
    assert c.section_names() == ["conv1", "b", " spaced "]
    assert section(c, "conv1") == {"a": "1"}
    assert section(c, "b") == {"d": "2"}
    assert section(c, " spaced ") == {"e": "3"}


def test_repeated_sections_merge_later_keys_win_with_their_line():
    c = cfg(
        "[a]",      # 1
        "x=1",      # 2
        "y=2",      # 3
        "[b]",      # 4
        "z=3",      # 5
        "[a]",      # 6
        "y=20",     # 7
        "w=4",      # 8
    )
    assert c.section_names() == ["a", "b"]
    # y keeps its place among the keys (a dict update), takes the later value and line.
    assert section(c, "a") == {"x": "1", "y": "20", "w": "4"}
    assert c.keys("a") == ["x", "y", "w"]
    assert c.line_of("a", "x") == 2
    assert c.line_of("a", "y") == 7
    assert c.line_of("a", "w") == 8
    assert c.sections["a"].lines == [1, 6]
    assert c.line_of("a") == 1
    assert section(c, "b") == {"z": "3"}


def test_key_colon_value_form_and_separator_choice():
    c = cfg("[s]",
            "key: value",
            "a:b=c",          # the first ':' or '=' separates: key 'a', value 'b=c'
            "d=e:f",          # key 'd', value 'e:f'
            "filter size = 3",  # a key may hold spaces; trailing ones are dropped
            "g   =   spaced out   ")
    assert section(c, "s") == {"key": "value", "a": "b=c", "d": "e:f", "filter size": "3",
                               "g": "spaced out"}


def test_empty_values_and_the_double_quote_pair():
    c = cfg("[s]", 'a=""', "b=", 'c=" x "', "d=''", 'e= "" ')
    # exactly "" (after stripping) becomes empty; other quotes are kept as written.
    assert section(c, "s") == {"a": "", "b": "", "c": '" x "', "d": "''", "e": ""}


def test_empty_file_and_comment_only_file_have_no_sections():
    assert parse_cfg_text("", NAME).section_names() == []
    assert cfg("# only", "; comments", "REM and remarks", "", "   ").section_names() == []


# -- comments ----------------------------------------------------------------
def test_hash_semicolon_and_rem_comment_lines():
    c = cfg(
        "# a comment before the first header is allowed",  # 1
        "; so is this one=1",                              # 2
        "[s]",                                             # 3
        "#k1=1",                                           # 4 comment
        ";k2=2",                                           # 5 comment
        "REM k3=3",                                        # 6 first word 'rem', starts with R
        "Rem",                                             # 7 likewise
        "rem = 5",                                         # 8 first word is 'rem': a comment
        "rEm\tk4=4",                                       # 9 tab separates words too
        "rem=6",                                           # 10 first word 'rem=6': an option
        "remark=7",                                        # 11 first word 'remark': an option
        "REM:8",                                           # 12 first word 'REM:8': option 'rem'
    )
    # 'rem' is set on line 10 and again on line 12 (key:value form); the later wins.
    assert section(c, "s") == {"rem": "8", "remark": "7"}
    assert c.line_of("s", "rem") == 12


def test_indented_rem_continues_the_previous_value():
    # ' rem' starts with whitespace, so it is not a comment: after a key it continues it.
    c = cfg("[s]", "a=1", " rem x")
    assert c.get("s", "a") == "1\nrem x"


def test_indented_rem_right_after_a_header_is_a_parse_error():
    # No key to continue, and an option may not start with whitespace: a junk line.
    exc = raises_config_error(lambda: cfg("[s]", " rem x"), line=2)
    assert "rem x" in exc.reason


def test_indented_rem_before_any_header_is_fatal_at_line_1():
    exc = raises_config_error(lambda: cfg(" rem x", "[s]"), line=1)
    assert "before the first [section] header" in exc.reason


# -- inline comments and values --------------------------------------------
def test_inline_semicolon_rules():
    c = cfg(
        "[s]",
        "a=x ;y",       # ';' after a space ends the value
        "b=x\t;y",      # a tab is whitespace too
        "c=x;y",        # no whitespace before ';': kept
        "d=x;y ;z",     # only the FIRST ';' is examined; it follows 'x', so all is kept
        "e=x # not a comment",  # '#' inside a value is kept
        "f=#x",
        "g = ;note",    # the separator eats the space, the value starts with ';'; Python 2 then
                        # looked at the value's last character ('e'): not whitespace, kept
        "h=;note ",     # ...and here the last character is a space: cut at 0, empty
        "i=x\x0c;y",    # form feed is ASCII whitespace
    )
    assert section(c, "s") == {
        "a": "x", "b": "x", "c": "x;y", "d": "x;y ;z", "e": "x # not a comment",
        "f": "#x", "g": ";note", "h": "", "i": "x",
    }


def test_continuation_lines_join_with_newline():
    c = cfg(
        "[s]",
        "a=first",
        "  second",
        "\tthird ;not cut",  # no inline-comment rule on continuation lines
        "",                  # a blank line does not end the value...
        "   fourth",         # ...so this still continues 'a'
        "  # indented hash", # an indented '#' line is appended, not a comment
        'b=""',
        "  more",            # '""' became '' first, then the continuation is joined
        "c=3",
    )
    assert c.get("s", "a") == "first\nsecond\nthird ;not cut\nfourth\n# indented hash"
    assert c.get("s", "b") == "\nmore"
    assert c.get("s", "c") == "3"
    assert c.line_of("s", "a") == 2


def test_continuation_of_a_key_that_is_set_again_starts_afresh():
    c = cfg("[s]", "a=1", "  2", "[t]", "x=0", "[s]", "a=3", "  4")
    assert c.get("s", "a") == "3\n4"


def test_text_before_the_first_header_is_fatal_naming_its_line():
    exc = raises_config_error(lambda: cfg("ano[conv1a]", "[conv1a]", "a=1"), line=1)
    assert "ano[conv1a]" in exc.reason
    # comments and blank lines before it do not count, but do count as lines
    raises_config_error(lambda: cfg("# c", "", "x=1", "[s]"), line=3)


def test_a_junk_line_is_an_error_naming_its_line():
    exc = raises_config_error(lambda: cfg("[s]", "a=1", "junk here", "b=2"), line=3)
    assert "junk here" in exc.reason
    assert "more such lines" not in exc.reason


def test_several_junk_lines_report_the_first_and_count_the_rest():
    exc = raises_config_error(lambda: cfg("[s]", "a=1", "=5", "b=2", "no separator", "[]"), line=3)
    # '=5' (an option may not start with '='), 'no separator', '[]' (a header needs a name)
    assert "(and 2 more such lines)" in exc.reason


# -- interpolation -------------------------------------------------------------
def test_interpolation_of_keys_and_double_percent():
    c = cfg("[s]", "base=/data", "path=%(base)s/x", "pct=100%%", "mixed=%(BASE)s:%%",
            "nested=%(path)s/y")
    assert c.get("s", "path") == "/data/x"
    assert c.get("s", "pct") == "100%"
    assert c.get("s", "mixed") == "/data:%"   # the referenced name is lower-cased too
    assert c.get("s", "nested") == "/data/x/y"


@pytest.mark.parametrize("value", ["5%", "%d", "50% off", "%(base)d", "%(unclosed"])
def test_lone_percent_is_an_error_naming_section_and_key(value):
    c = cfg("[s]", "base=1", f"bad={value}")
    exc = raises_config_error(lambda: c.get("s", "bad"), line=3, section_="s", key="bad")
    assert "%" in exc.reason


def test_reference_to_a_missing_key_is_an_error():
    c = cfg("[s]", "a=%(nope)s")
    exc = raises_config_error(lambda: c.get("s", "a"), line=2, section_="s", key="a")
    assert "nope" in exc.reason


def test_interpolation_loop_is_an_error():
    c = cfg("[s]", "a=%(b)s", "b=%(a)s")
    exc = raises_config_error(lambda: c.get("s", "a"), line=2, section_="s", key="a")
    assert "loop" in exc.reason


def test_interpolation_loop_of_three_names_the_key_that_was_read():
    # The error is about the value asked for: its key and its line, whichever key the
    # cycle happened to be on when the depth limit struck.
    c = cfg("[s]", "a=%(b)s", "b=%(c)s", "c=%(a)s")
    raises_config_error(lambda: c.get("s", "a"), line=2, section_="s", key="a")
    raises_config_error(lambda: c.get("s", "b"), line=3, section_="s", key="b")


def test_interpolation_depth_limit_is_ten():
    # k0 -> k1 -> ... each reference whose value holds '%' goes one level deeper.
    # k0..k9 hold '%': ten levels, allowed. k0..k10 hold '%': eleven, rejected.
    ten = ["[s]", *(f"k{i}=%(k{i + 1})s" for i in range(10)), "k10=end"]
    assert cfg(*ten).get("s", "k0") == "end"
    eleven = ["[s]", *(f"k{i}=%(k{i + 1})s" for i in range(11)), "k11=end"]
    raises_config_error(lambda: cfg(*eleven).get("s", "k0"), line=2, section_="s", key="k0")


def test_interpolation_of_name_gives_the_section_name():
    # SafeConfigParser kept each section's name under the key __name__; a key of that
    # name written in the section itself takes its place.
    c = cfg("[DEFAULT]", "tag=<%(__name__)s>", "[conv1]", "a=%(__name__)s.w", "[conv2]",
            "__name__=other", "a=%(__name__)s")
    assert c.get("conv1", "a") == "conv1.w"
    assert c.get("conv1", "tag") == "<conv1>"
    assert c.get("conv2", "a") == "other"


def test_interpolation_errors_only_when_the_value_is_read():
    c = cfg("[s]", "bad=5%", "good=1")
    assert c.get("s", "good") == "1"


# -- [DEFAULT] ----------------------------------------------------------------
def test_default_keys_are_visible_in_every_section():
    c = cfg("[DEFAULT]", "initW=0.01", "full=%(name)s!", "[a]", "name=A", "x=1", "[b]", "initW=0.5",
            "name=B")
    assert c.section_names() == ["a", "b"]           # DEFAULT is not a section
    assert c.get("a", "initw") == "0.01"
    assert c.get("b", "initw") == "0.5"              # a section's own key wins
    assert c.has_option("a", "INITW")
    assert c.keys("a") == ["name", "x", "initw", "full"]
    # a default's references are resolved in the section that reads it
    assert c.get("a", "full") == "A!"
    assert c.get("b", "full") == "B!"


def test_default_in_other_case_is_an_ordinary_section():
    c = cfg("[default]", "a=1", "[s]", "b=2")
    assert c.section_names() == ["default", "s"]
    assert not c.has_option("s", "a")


# -- Python 2 bytes: Latin-1, ASCII-only whitespace and case -------------------
def test_non_ascii_whitespace_is_not_whitespace():
    c = cfg(
        "[s]",
        "a=\xa0x\xa0",         # no-break space is kept at both ends
        "\xa0b=1",             # a line starting with \xa0 is not a continuation: key '\xa0b'
        "c=x\xa0;y",           # \xa0 before ';' does not make it a comment
        "d=\x1cx\x1f",         # \x1c-\x1f are whitespace to Python 3's str.strip, not to Python 2
        "e=1\x852",            # \x85 (NEL) does not end a line
        "f=\x0b y \x0c",       # vertical tab and form feed are ASCII whitespace: stripped
    )
    assert section(c, "s") == {
        "a": "\xa0x\xa0", "\xa0b": "1", "c": "x\xa0;y", "d": "\x1cx\x1f", "e": "1\x852", "f": "y",
    }


def test_a_line_of_only_no_break_space_is_a_junk_line():
    raises_config_error(lambda: cfg("[s]", "a=1", "\xa0"), line=3)


def test_only_ascii_letters_are_lower_cased():
    c = cfg("[\xc4]", "F\xc4=1", "[\xe4]", "x=2")
    assert c.section_names() == ["\xc4", "\xe4"]    # section names are case-sensitive anyway
    assert c.keys("\xc4") == ["f\xc4"]              # 'F' lowered, '\xc4' (A umlaut) kept
    assert c.has_option("\xc4", "F\xc4")
    assert not c.has_option("\xc4", "f\xe4")


def test_crlf_line_ends():
    c = parse_cfg_text("[s]\r\na=1\r\nb = x ;c\r\n", NAME)
    assert c.section_names() == ["s"]
    assert section(c, "s") == {"a": "1", "b": "x"}


def test_read_cfg_decodes_latin1_and_never_fails_to_decode(tmp_path: Path):
    path = tmp_path / "latin.cfg"
    path.write_bytes(b"[s\xe9]\nname=caf\xe9\xff\nsp=\xa0x\n")
    c = read_cfg(path)
    assert c.path == str(path)
    assert c.section_names() == ["s\xe9"]
    assert section(c, "s\xe9") == {"name": "caf\xe9\xff", "sp": "\xa0x"}


def test_read_cfg_missing_file_and_display_name(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        read_cfg(tmp_path / "nope.cfg", display_name="layers/nope.cfg")
    assert type(info.value) is ConfigError
    assert str(info.value) == "layers/nope.cfg: file not found"
    with pytest.raises(ConfigError, match="is a folder"):
        read_cfg(tmp_path)


# -- the error type and its message --------------------------------------------
def test_config_error_message_format():
    exc = ConfigError("must be an int (got '4.0')", file="layers.cfg", line=12, section="conv1",
                      key="filters")
    assert str(exc) == "layers.cfg: line 12: [conv1] key 'filters': must be an int (got '4.0')"
    assert (exc.file, exc.line, exc.section, exc.key) == ("layers.cfg", 12, "conv1", "filters")
    assert isinstance(exc, ReplayError) and exc.exit_code == 2
    assert str(ConfigError("no type", file="f.cfg", section="x")) == "f.cfg: [x]: no type"
    assert str(ConfigError("bad", file="f.cfg", line=3)) == "f.cfg: line 3: bad"
    assert str(ConfigError("bad")) == "bad"


def test_config_error_with_file_fills_only_a_missing_file():
    bare = ConfigError("bad", line=2, section="s", key="k")
    named = bare.with_file("x.cfg")
    assert str(named) == "x.cfg: line 2: [s] key 'k': bad"
    assert named.with_file("other.cfg") is named


def test_cfgfile_error_points_at_the_key_or_the_header():
    c = cfg("[s]", "a=1", "[t]", "b=2")
    at_key = c.error("bad value", section="t", key="B")
    assert str(at_key) == f"{NAME}: line 4: [t] key 'B': bad value"
    at_header = c.error("missing", section="t", key="absent")
    assert at_header.line == 3
    assert str(c.error("whole file")) == f"{NAME}: whole file"
