"""Regenerate the PDF fixtures used by tests/knowledge/ingest/test_parsers.py.

Run from the project root: `uv run python tests/knowledge/files/make_pdfs.py`. The output is
byte-for-byte reproducible, so re-running it leaves `git status` clean.

- two_pages.pdf: page 1 in English (Helvetica), page 2 in Japanese (KozMinPro-Regular through
  the UniJIS-UCS2-H CMap, which pypdf decodes as UTF-16BE); title "Pump Manual".
- encrypted.pdf: one page, user password "secret", RC4-128 (pypdf encrypts and decrypts RC4
  without the optional `cryptography` package, which AES would need).
- scanned.pdf: two pages that only paint rectangles, like a scan without a text layer.
- broken.pdf: the first bytes of two_pages.pdf followed by garbage, with no xref and no trailer.
"""

from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    NumberObject,
    TextStringObject,
)

FILES = Path(__file__).resolve().parent
# pypdf draws a random file identifier; a fixed one keeps the files reproducible.
FILE_ID = ByteStringObject(b"kioku-test-fixtr")
US_LETTER = (612, 792)


def helvetica() -> DictionaryObject:
    return DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )


def kozmin() -> DictionaryObject:
    """A non-embedded Adobe-Japan1 font addressed with UCS-2 codes."""
    descriptor = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/FontDescriptor"),
            NameObject("/FontName"): NameObject("/KozMinPro-Regular"),
            NameObject("/Flags"): NumberObject(6),
            NameObject("/FontBBox"): ArrayObject(
                [NumberObject(-195), NumberObject(-272), NumberObject(1110), NumberObject(1075)]
            ),
            NameObject("/ItalicAngle"): NumberObject(0),
            NameObject("/Ascent"): NumberObject(880),
            NameObject("/Descent"): NumberObject(-120),
            NameObject("/CapHeight"): NumberObject(740),
            NameObject("/StemV"): NumberObject(80),
        }
    )
    descendant = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/CIDFontType0"),
            NameObject("/BaseFont"): NameObject("/KozMinPro-Regular"),
            NameObject("/CIDSystemInfo"): DictionaryObject(
                {
                    NameObject("/Registry"): TextStringObject("Adobe"),
                    NameObject("/Ordering"): TextStringObject("Japan1"),
                    NameObject("/Supplement"): NumberObject(4),
                }
            ),
            NameObject("/FontDescriptor"): descriptor,
            NameObject("/DW"): NumberObject(1000),
        }
    )
    return DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type0"),
            NameObject("/BaseFont"): NameObject("/KozMinPro-Regular-UniJIS-UCS2-H"),
            NameObject("/Encoding"): NameObject("/UniJIS-UCS2-H"),
            NameObject("/DescendantFonts"): ArrayObject([descendant]),
        }
    )


def ascii_line(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("cp1252") + b") Tj"


def ucs2_line(text: str) -> bytes:
    return b"<" + text.encode("utf-16-be").hex().upper().encode() + b"> Tj"


def add_page(writer: PdfWriter, *, content: bytes, fonts: dict[str, DictionaryObject]) -> None:
    page = writer.add_blank_page(*US_LETTER)
    if fonts:
        page[NameObject("/Resources")] = DictionaryObject(
            {
                NameObject("/Font"): DictionaryObject(
                    {NameObject(name): font for name, font in fonts.items()}
                )
            }
        )
    stream = DecodedStreamObject()
    stream.set_data(content)
    page.replace_contents(stream)


def text_block(lines: list[bytes], *, font: str, size: int) -> bytes:
    """Lines set top-down from (72, 720), one text object per page."""
    body = b"\n".join(line if i == 0 else b"0 -18 Td " + line for i, line in enumerate(lines))
    return b"BT /%s %d Tf 72 720 Td\n%s\nET" % (font.encode(), size, body)


def save(writer: PdfWriter, name: str) -> bytes:
    path = FILES / name
    with path.open("wb") as handle:
        writer.write(handle)
    return path.read_bytes()


def make_two_pages() -> bytes:
    writer = PdfWriter()
    add_page(
        writer,
        content=text_block(
            [
                ascii_line("Pump P-200 maintenance"),
                ascii_line("Check the pressure gauge before opening the valve."),
            ],
            font="F1",
            size=12,
        ),
        fonts={"/F1": helvetica()},
    )
    add_page(
        writer,
        content=text_block(
            [ucs2_line("ポンプの保守"), ucs2_line("バルブを開く前に圧力計を確認してください。")],
            font="F2",
            size=12,
        ),
        fonts={"/F2": kozmin()},
    )
    writer.add_metadata({"/Title": "Pump Manual", "/Producer": "kioku make_pdfs.py"})
    writer._ID = ArrayObject([FILE_ID, FILE_ID])
    return save(writer, "two_pages.pdf")


def make_encrypted() -> None:
    writer = PdfWriter()
    add_page(
        writer,
        content=text_block([ascii_line("Confidential wiring diagram")], font="F1", size=12),
        fonts={"/F1": helvetica()},
    )
    writer.add_metadata({"/Producer": "kioku make_pdfs.py"})
    writer._ID = ArrayObject([FILE_ID, FILE_ID])
    writer.encrypt("secret", algorithm="RC4-128")
    # encrypt() draws a random second identifier; the key only depends on the first.
    writer._ID = ArrayObject([FILE_ID, FILE_ID])
    save(writer, "encrypted.pdf")


def make_scanned() -> None:
    writer = PdfWriter()
    for shade in (b"0.8", b"0.6"):
        add_page(writer, content=b"%s g 72 72 468 648 re f" % shade, fonts={})
    writer.add_metadata({"/Producer": "kioku make_pdfs.py"})
    writer._ID = ArrayObject([FILE_ID, FILE_ID])
    save(writer, "scanned.pdf")


def make_broken(valid: bytes) -> None:
    (FILES / "broken.pdf").write_bytes(valid[:120] + b"\x8f\x02garbage" * 20)


if __name__ == "__main__":
    make_broken(make_two_pages())
    make_encrypted()
    make_scanned()
