"""Bytes of a web page to text, with the encodings browsers use and nothing else.

A page names its own charset (the Content-Type header, a `<meta charset>`), and that name is
written by whoever serves the page. Handing it to Python's codec lookup lets the page pick any
codec Python has: `punycode` is quadratic (1 MB declared `charset=punycode` held the event loop
13.6 s), and others (`idna`, `uu_codec`, `zlib_codec`, `rot13`, `raw_unicode_escape`) are no more
fit to read a web page. So a label is looked up only in LABELS, a fixed table of the WHATWG
Encoding Standard's labels (encoding.spec.whatwg.org) for the encodings below, each mapped to the
Python codec that decodes it the way a browser does; any other label reads as UTF-8 with
replacement, and no label is ever passed to `codecs.lookup`.

Kept: UTF-8, UTF-16LE/BE, windows-1250..1258 (where ISO-8859-1, -9, -11 and US-ASCII go too, as
in browsers), ISO-8859-2..16, KOI8-R/U, Shift_JIS (as windows-31j), EUC-JP, EUC-KR (as
windows-949), GBK and gb18030 (gb18030 decodes both), Big5 (with HKSCS). Every one is a table or
a linear state machine in C: 2 MiB decodes in 1 to 20 ms here (UTF-8 of random bytes, each one
replaced, is the slowest), which is still too long for the event loop, so decoding runs in the
page worker (`pageworker`) next to the parser.

Order, as in the HTML standard: a byte-order mark; then the header's charset; then a `<meta>`
charset in the first 4096 bytes (where a UTF-16 label means UTF-8: a page whose meta tag reads
as ASCII is not UTF-16); then UTF-8. Undecodable bytes become U+FFFD, never an error.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

__all__ = ["LABELS", "META_SNIFF_BYTES", "codec_for_label", "decode_page"]

META_SNIFF_BYTES: Final = 4096

_ENCODINGS: Final[dict[str, str]] = {
    # Python codec: the WHATWG labels that mean it (lowercase, as the standard lists them).
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "utf-16-le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
    "utf-16-be": "unicodefffe utf-16be",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2"
    " iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3"
    " iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4"
    " iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595"
    " iso_8859-5 iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6"
    " iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126"
    " iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138"
    " iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100"
    " iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9"
    " iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk"
    " gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989"
    " ksc5601 ksc_5601 windows-949",
}

#: WHATWG label (lowercase) -> the Python codec that decodes it. The only names ever decoded with.
LABELS: Final[dict[str, str]] = {
    label: codec for codec, labels in _ENCODINGS.items() for label in labels.split()
}

_UTF16: Final = frozenset({"utf-16-le", "utf-16-be"})
# WHATWG strips ASCII whitespace around a label; a longer "label" is not one.
_MAX_LABEL_CHARS: Final = 40
_META_CHARSET: Final = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I
)


def codec_for_label(label: str | None) -> str | None:
    """The Python codec for a WHATWG encoding `label` (case and surrounding whitespace ignored),
    or None for a label outside the allow-list (the caller then reads UTF-8)."""
    if not label:
        return None
    key = label.strip(" \t\n\f\r").lower()
    if len(key) > _MAX_LABEL_CHARS:
        return None
    return LABELS.get(key)


def decode_page(body: bytes, header_charset: str | None) -> str:
    """`body` as text: BOM, then the header's charset, then a `<meta>` charset, then UTF-8; each
    only if it is in the allow-list (LABELS). Never raises for any bytes or any label."""
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8) :].decode("utf-8", "replace")
    if body.startswith(codecs.BOM_UTF16_LE):
        return body[2:].decode("utf-16-le", "replace")
    if body.startswith(codecs.BOM_UTF16_BE):
        return body[2:].decode("utf-16-be", "replace")
    codec = codec_for_label(header_charset)
    if codec is None:
        sniffed = _META_CHARSET.search(body[:META_SNIFF_BYTES])
        if sniffed is not None:
            codec = codec_for_label(sniffed.group(1).decode("ascii"))
            if codec in _UTF16:
                codec = "utf-8"
    return body.decode(codec or "utf-8", "replace")
