"""Decoding a page: only the web's encodings, by WHATWG label; any other label reads as UTF-8.

The page names its charset, so the page would otherwise choose which Python codec runs on the
bot: `punycode` is quadratic (1 MB took 13.6 s on the event loop), and `rot13`, `idna`,
`zlib_codec`, `uu_codec` or `raw_unicode_escape` are no way to read a web page either.
"""

from __future__ import annotations

import codecs

import pytest

from notifier.workflows.charsets import LABELS, codec_for_label, decode_page

# "bcher-kva" is how punycode writes "bücher": decoded by name it would read "bücher".
PUNY = b"bcher-kva"


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        ("  utf-8\t", "utf-8"),
        ("unicode-1-1-utf-8", "utf-8"),
        ("windows-1252", "cp1252"),
        ("iso-8859-1", "cp1252"),  # as browsers do: Latin-1 labels mean windows-1252
        ("latin1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("iso-8859-9", "cp1254"),
        ("windows-1250", "cp1250"),
        ("windows-1251", "cp1251"),
        ("windows-1258", "cp1258"),
        ("iso-8859-2", "iso8859_2"),
        ("iso-8859-15", "iso8859_15"),
        ("iso-8859-16", "iso8859_16"),
        ("koi8-r", "koi8_r"),
        ("shift_jis", "cp932"),
        ("sjis", "cp932"),
        ("euc-jp", "euc_jp"),
        ("euc-kr", "cp949"),
        ("gb2312", "gb18030"),
        ("gbk", "gb18030"),
        ("gb18030", "gb18030"),
        ("big5", "big5hkscs"),
        ("utf-16", "utf-16-le"),
        ("utf-16be", "utf-16-be"),
    ],
)
def test_web_labels_map_to_their_codec(label: str, codec: str) -> None:
    assert codec_for_label(label) == codec


@pytest.mark.parametrize(
    "label",
    [
        "punycode",
        "PUNYCODE",
        "idna",
        "rot13",
        "rot_13",
        "zlib_codec",
        "zlib",
        "base64",
        "uu_codec",
        "hex",
        "bz2",
        "raw_unicode_escape",
        "unicode_escape",
        "utf-7",
        "utf-32",
        "cp037",  # EBCDIC
        "mbcs",
        "x-user-defined",
        "iso-2022-jp",
        "replacement",
        "",
        "utf-8" + " " * 50 + "x",
    ],
)
def test_other_labels_are_refused(label: str) -> None:
    assert codec_for_label(label) is None


def test_every_allowed_codec_is_a_text_codec_python_has() -> None:
    for codec in set(LABELS.values()):
        assert codecs.lookup(codec)._is_text_encoding, codec


@pytest.mark.parametrize(
    ("body", "header", "text"),
    [
        (PUNY, "punycode", "bcher-kva"),  # refused by header: read as UTF-8
        (b'<meta charset="punycode">' + PUNY, None, '<meta charset="punycode">bcher-kva'),
        (b"<meta charset=rot13>uryyb", None, "<meta charset=rot13>uryyb"),
        (b"caf\xe9", "iso-8859-1", "café"),
        (b"caf\xe9", None, "caf\ufffd"),  # no label: UTF-8, the bad byte replaced
        (b"caf\xe9", "nonsense", "caf\ufffd"),
        (b'<meta charset="windows-1252">caf\xe9', None, '<meta charset="windows-1252">café'),
        (b"<meta http-equiv=Content-Type content='text/html; charset=koi8-r'>\xf0", None, None),
        ("日本語".encode("shift_jis"), "Shift_JIS", "日本語"),
        ("日本語".encode("euc-jp"), "EUC-JP", "日本語"),
        ("한국어".encode("euc-kr"), "euc-kr", "한국어"),
        ("中文".encode("gb2312"), "gb2312", "中文"),
        ("中文".encode("big5"), "big5", "中文"),
        # The header wins over <meta>; a BOM wins over both.
        (b'<meta charset="utf-8">caf\xe9', "windows-1252", '<meta charset="utf-8">café'),
        (codecs.BOM_UTF8 + "café".encode(), "windows-1252", "café"),
        (codecs.BOM_UTF16_LE + "café".encode("utf-16-le"), None, "café"),
        (codecs.BOM_UTF16_BE + "café".encode("utf-16-be"), "utf-8", "café"),
        # A meta tag readable as ASCII cannot be in UTF-16: it means UTF-8.
        (b'<meta charset="utf-16">caf\xc3\xa9', None, '<meta charset="utf-16">café'),
        ("café".encode("utf-16-le"), "utf-16le", "café"),
    ],
)
def test_decode_page(body: bytes, header: str | None, text: str | None) -> None:
    decoded = decode_page(body, header)
    if text is None:  # the koi8-r row: the meta's charset parameter is honoured
        assert decoded.endswith("П")
    else:
        assert decoded == text


def test_a_large_punycode_page_is_read_as_utf8_not_decoded_as_punycode() -> None:
    body = b"<title>Puny</title>-" + b"a" * 1_000_000  # punycode would take about a minute
    for header, page in [("punycode", body), (None, b'<meta charset="punycode">' + body)]:
        assert decode_page(page, header) == page.decode("utf-8")
