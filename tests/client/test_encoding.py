"""B2's string encoding (B2-API.md §5.5), with the official test vectors of Backblaze's
"String Encoding" page: each character with its fully and its minimally encoded form."""

from __future__ import annotations

import pytest

from b2fs.b2.encoding import decode, encode, encode_url_path

# (string, fullyEncoded, minimallyEncoded), as published by Backblaze.
OFFICIAL_VECTORS: list[tuple[str, str, str]] = [
    (" ", "%20", "+"),
    ("!", "%21", "!"),
    ('"', "%22", "%22"),
    ("#", "%23", "%23"),
    ("$", "%24", "$"),
    ("%", "%25", "%25"),
    ("&", "%26", "%26"),
    ("'", "%27", "'"),
    ("(", "%28", "("),
    (")", "%29", ")"),
    ("*", "%2A", "*"),
    ("+", "%2B", "%2B"),
    (",", "%2C", "%2C"),
    ("-", "%2D", "-"),
    (".", "%2E", "."),
    ("/", "/", "/"),
    ("0", "%30", "0"),
    ("1", "%31", "1"),
    ("2", "%32", "2"),
    ("3", "%33", "3"),
    ("4", "%34", "4"),
    ("5", "%35", "5"),
    ("6", "%36", "6"),
    ("7", "%37", "7"),
    ("8", "%38", "8"),
    ("9", "%39", "9"),
    (":", "%3A", ":"),
    (";", "%3B", ";"),
    ("<", "%3C", "%3C"),
    ("=", "%3D", "="),
    (">", "%3E", "%3E"),
    ("?", "%3F", "%3F"),
    ("@", "%40", "@"),
    *[(c, f"%{ord(c):02X}", c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"],
    ("[", "%5B", "%5B"),
    ("\\", "%5C", "%5C"),
    ("]", "%5D", "%5D"),
    ("^", "%5E", "%5E"),
    ("_", "%5F", "_"),
    ("`", "%60", "%60"),
    *[(c, f"%{ord(c):02X}", c) for c in "abcdefghijklmnopqrstuvwxyz"],
    ("{", "%7B", "%7B"),
    ("|", "%7C", "%7C"),
    ("}", "%7D", "%7D"),
    ("~", "%7E", "~"),
    ("\x7f", "%7F", "%7F"),
    ("\u81ea\u7531", "%E8%87%AA%E7%94%B1", "%E8%87%AA%E7%94%B1"),
    ("\U00010400", "%F0%90%90%80", "%F0%90%90%80"),
]


def test_the_vector_table_is_complete() -> None:
    # Every printable ASCII character from space to DEL, plus the two non-ASCII examples.
    assert [s for s, _, _ in OFFICIAL_VECTORS[:96]] == [chr(c) for c in range(0x20, 0x80)]
    assert len(OFFICIAL_VECTORS) == 98


@pytest.mark.parametrize(("string", "full", "minimal"), OFFICIAL_VECTORS)
def test_encoding_gives_one_of_the_official_forms(string: str, full: str, minimal: str) -> None:
    assert encode(string) in (full, minimal)


@pytest.mark.parametrize(("string", "full", "minimal"), OFFICIAL_VECTORS)
def test_both_official_forms_decode_to_the_string(string: str, full: str, minimal: str) -> None:
    assert decode(full) == string
    assert decode(minimal) == string


def test_space_is_sent_as_percent_20_and_plus_as_percent_2b() -> None:
    # %20 is the form every decoder understands; a literal '+' would decode as a space.
    assert encode("a b+c") == "a%20b%2Bc"
    assert decode("a+b%2Bc") == "a b+c"


def test_round_trip_of_a_mixed_name() -> None:
    name = "dir/sub dir/r\u00e9sum\u00e9 (final) #2 100%+\U0001f600.txt"
    assert decode(encode(name)) == name
    assert encode(name).isascii()


def test_url_paths_escape_dot_segments_only() -> None:
    assert encode_url_path("a/../b/./c.txt") == "a/%2E%2E/b/%2E/c.txt"
    assert encode_url_path("..hidden/x..y/.z") == "..hidden/x..y/.z"
    assert decode(encode_url_path("a/../b")) == "a/../b"


def test_invalid_utf8_is_refused_when_decoding() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode("%FF%FE")
