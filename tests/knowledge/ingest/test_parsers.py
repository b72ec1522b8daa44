import codecs
import io
import random
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from knowledge.errors import (
    SOURCE_BINARY_CONTENT,
    SOURCE_BROKEN_FILE,
    SOURCE_EMPTY,
    SOURCE_ENCRYPTED_PDF,
    SOURCE_INVALID_ENCODING,
    SOURCE_UNSUPPORTED_FORMAT,
)
from knowledge.ingest.base import Section
from knowledge.ingest.parsers import (
    ExtractionError,
    detect_format,
    extract,
    extract_text,
)

FILES = Path(__file__).resolve().parent.parent / "files"
JAPANESE = "ポンプの圧力計を確認してください。"
TRADITIONAL_CHINESE = "請先關閉閥門，再更換密封圈。"


def read_fixture(name: str) -> bytes:
    return (FILES / name).read_bytes()


def extraction_error(data: bytes, **kwargs: str) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract(data, **kwargs)
    return caught.value


# --- Plain text ---------------------------------------------------------------------------------


def test_plain_text_is_one_section_titled_by_its_first_line() -> None:
    document = extract(b"\n\nPump P-200\n\nCheck the gauge.\n", filename="notes.txt")

    assert document.format == "text"
    assert document.title == "Pump P-200"
    assert document.sections == [Section(text="Pump P-200\n\nCheck the gauge.")]


def test_plain_text_has_no_title_when_its_first_line_is_long() -> None:
    document = extract(("word " * 40).encode(), filename="notes.txt")

    assert document.title is None


def test_crlf_and_lone_cr_newlines_become_lf() -> None:
    document = extract(b"one\r\ntwo\rthree", filename="notes.txt")

    assert document.sections[0].text == "one\ntwo\nthree"


def test_utf8_bom_is_removed() -> None:
    document = extract(codecs.BOM_UTF8 + "Überdruck".encode(), filename="notes.txt")

    assert document.sections[0].text == "Überdruck"
    assert document.title == "Überdruck"


def test_utf16_with_bom_is_decoded() -> None:
    document = extract(f"{JAPANESE}\r\n".encode("utf-16"), filename="notes.txt")

    assert document.sections[0].text == JAPANESE
    assert document.metadata == {"encoding": "utf-16"}


def test_japanese_and_traditional_chinese_pass_through_intact() -> None:
    text = f"{JAPANESE}\n{TRADITIONAL_CHINESE}"

    document = extract(text.encode(), filename="notes.txt")

    assert document.sections[0].text == text


def test_decomposed_characters_are_normalised_to_nfc() -> None:
    document = extract("Cafe\u0301 か\u3099".encode(), filename="notes.txt")

    assert document.sections[0].text == "Café が"


def test_a_few_nul_bytes_are_removed_from_text() -> None:
    document = extract(b"valve\x00 open" + b" and running" * 10, filename="notes.txt")

    assert document.sections[0].text.startswith("valve open and running")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("filename", ["big.txt", "big.md"])
def test_a_20_mb_file_is_extracted_in_linear_time(filename: str) -> None:
    line = f"Die Pumpe läuft. {JAPANESE} The pump runs fine.\n"
    data = (line * (20_000_000 // len(line.encode()))).encode()

    document = extract(data, filename=filename)

    assert len(document.sections[0].text) == len(data.decode()) - 1


# --- Markdown -----------------------------------------------------------------------------------


def markdown_manual() -> dict[tuple[str, ...], str]:
    document = extract(read_fixture("manual.md"), filename="manual.md")
    return {section.heading_path: section.text for section in document.sections}


def test_markdown_sections_carry_the_stack_of_enclosing_headings() -> None:
    sections = markdown_manual()

    assert list(sections) == [
        (),
        ("Pump P-200 Manual",),
        ("Pump P-200 Manual", "Installation"),
        ("Pump P-200 Manual", "Installation", "Wiring"),
        ("Pump P-200 Manual", "Installation", "Priming"),
        ("Pump P-200 Manual", "Troubleshooting"),
        ("Pump P-200 Manual", "Noise at start-up"),
        ("Error codes",),
    ]


def test_markdown_text_before_the_first_heading_keeps_its_front_matter() -> None:
    assert markdown_manual()[()] == (
        "---\nproduct: P-200\n---\n\nRead this manual before servicing the pump."
    )


def test_markdown_heading_lines_stay_out_of_section_text() -> None:
    sections = markdown_manual()

    assert sections[("Pump P-200 Manual", "Installation")] == "Mount the pump on a level base."
    assert sections[("Error codes",)] == "E1 means overheating."


def test_markdown_lines_in_fenced_code_are_not_headings() -> None:
    wiring = markdown_manual()[("Pump P-200 Manual", "Installation", "Wiring")]

    assert "```bash\n# not a heading: a comment inside a fenced code block\n" in wiring
    assert "~~~\n## also not a heading\n~~~" in wiring


def test_markdown_body_is_kept_as_written() -> None:
    noise = markdown_manual()[("Pump P-200 Manual", "Noise at start-up")]

    assert noise == "Check that the valve is open.\n\n- loose bolts\n- worn bearings"


def test_markdown_title_is_the_first_level_one_heading() -> None:
    document = extract(read_fixture("manual.md"), filename="manual.md")

    assert document.format == "markdown"
    assert document.title == "Pump P-200 Manual"


def test_markdown_without_a_level_one_heading_has_no_title() -> None:
    document = extract_text("## Setup\n\nPlug it in.", format="markdown")

    assert document.title is None
    assert document.sections == [Section(text="Plug it in.", heading_path=("Setup",))]


def test_markdown_heading_without_body_produces_no_section() -> None:
    document = extract_text("# Guide\n## Empty\n## Full\nText", format="markdown")

    assert document.sections == [Section(text="Text", heading_path=("Guide", "Full"))]


def test_markdown_closing_hashes_are_not_part_of_the_heading() -> None:
    document = extract_text("## Wiring ##\nText\n#hashtag stays text", format="markdown")

    assert document.sections == [
        Section(text="Text\n#hashtag stays text", heading_path=("Wiring",))
    ]


def test_markdown_dashes_after_a_blank_line_are_a_rule_not_a_heading() -> None:
    document = extract_text("Intro\n\n---\n\nMore", format="markdown")

    assert document.sections == [Section(text="Intro\n\n---\n\nMore")]


def test_markdown_with_only_headings_is_empty() -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text("# Title\n\n## Section\n", format="markdown")

    assert caught.value.code == SOURCE_EMPTY


# --- HTML ---------------------------------------------------------------------------------------


def html_page() -> dict[tuple[str, ...], str]:
    document = extract(read_fixture("page.html"), filename="page.html")
    return {section.heading_path: section.text for section in document.sections}


def test_html_scripts_styles_and_page_chrome_are_removed() -> None:
    text = "\n".join(html_page().values())

    for unwanted in ("tracking", "color: red", "bye", "Acme Support", "Pumps", "Related"):
        assert unwanted not in text
    assert "© Acme" not in text
    assert "Enable JavaScript" not in text


def test_html_headings_become_heading_paths() -> None:
    assert list(html_page()) == [
        ("Valve V-10",),
        ("Valve V-10", "Specifications"),
        ("Valve V-10", "Specifications", "Maintenance"),
    ]


def test_html_inline_whitespace_is_collapsed_and_entities_decoded() -> None:
    assert html_page()[("Valve V-10",)] == 'The V-10 is a ball valve for pipes up to 2" & 50 mm.'


def test_html_table_rows_become_lines_with_separated_cells() -> None:
    assert html_page()[("Valve V-10", "Specifications")] == (
        "Pressure | Temperature\n16 bar | < 120 °C"
    )


def test_html_lists_are_numbered_and_pre_keeps_its_whitespace() -> None:
    assert html_page()[("Valve V-10", "Specifications", "Maintenance")] == (
        "1. Close the upstream valve.\n2. Replace the seal.\n\ntorque:  25 Nm\n  check:  yearly"
    )


def test_html_title_comes_from_the_title_element() -> None:
    document = extract(read_fixture("page.html"), filename="page.html")

    assert document.format == "html"
    assert document.title == "Valve V-10 – Support"


def test_html_title_falls_back_to_the_first_h1() -> None:
    document = extract_text("<h1>Seal  kit</h1><p>Contents</p>", format="html")

    assert document.title == "Seal kit"


def test_html_paragraphs_are_separated_by_blank_lines_and_br_by_newlines() -> None:
    document = extract_text(
        "<body><p>First<br>line</p><div>Second</div><!-- note --><p>Third</p></body>",
        format="html",
    )

    assert document.sections[0].text == "First\nline\n\nSecond\n\nThird"


def test_html_without_main_keeps_the_whole_body() -> None:
    document = extract_text(
        "<html><body><nav>Home</nav><h2>FAQ</h2><p>Answer</p></body></html>", format="html"
    )

    assert document.sections == [
        Section(text="Home"),
        Section(text="Answer", heading_path=("FAQ",)),
    ]


def test_html_header_of_an_article_is_kept() -> None:
    document = extract_text(
        "<body><header>Site</header><article><header><h1>Post</h1><p>By Ann</p></header>"
        "<p>Body</p><footer>Tags: pumps</footer></article></body>",
        format="html",
    )

    assert document.title == "Post"
    assert document.sections == [
        Section(text="By Ann\n\nBody\n\nTags: pumps", heading_path=("Post",))
    ]


def test_html_hidden_elements_are_removed() -> None:
    document = extract_text(
        "<main><p>Shown</p></main><div hidden><nav>Menu</nav></div>"
        "<template><article>Draft</article></template>",
        format="html",
    )

    assert document.sections == [Section(text="Shown")]


def test_html_with_only_scripts_is_empty() -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text("<html><script>alert(1)</script></html>", format="html")

    assert caught.value.code == SOURCE_EMPTY


def test_html_in_a_declared_legacy_charset_is_decoded() -> None:
    page = '<html><head><meta charset="shift_jis"></head><body><p>ポンプ</p></body></html>'

    document = extract(page.encode("shift_jis"), filename="page.html")

    assert document.sections[0].text == "ポンプ"
    assert document.metadata == {"encoding": "shift_jis"}


def test_html_keeps_cjk_text_intact() -> None:
    document = extract_text(f"<p>{JAPANESE}</p><p>{TRADITIONAL_CHINESE}</p>", format="html")

    assert document.sections[0].text == f"{JAPANESE}\n\n{TRADITIONAL_CHINESE}"


# --- PDF ----------------------------------------------------------------------------------------


def test_pdf_has_one_section_per_page_with_its_number() -> None:
    document = extract(read_fixture("two_pages.pdf"), filename="two_pages.pdf")

    assert document.format == "pdf"
    assert document.metadata == {"pages": 2}
    assert document.sections == [
        Section(
            text="Pump P-200 maintenance\nCheck the pressure gauge before opening the valve.",
            page=1,
        ),
        Section(text="ポンプの保守\nバルブを開く前に圧力計を確認してください。", page=2),
    ]


def test_pdf_title_comes_from_its_metadata() -> None:
    document = extract(read_fixture("two_pages.pdf"), filename="two_pages.pdf")

    assert document.title == "Pump Manual"


def test_pdf_encrypted_with_a_user_password_is_rejected() -> None:
    error = extraction_error(read_fixture("encrypted.pdf"), filename="encrypted.pdf")

    assert error.code == SOURCE_ENCRYPTED_PDF
    assert "remove the password" in error.message


def test_encrypted_fixture_really_needs_its_password() -> None:
    reader = PdfReader(FILES / "encrypted.pdf")

    assert reader.is_encrypted
    assert reader.decrypt("secret")
    assert "Confidential wiring diagram" in reader.pages[0].extract_text()


def test_pdf_with_only_an_owner_password_is_read() -> None:
    writer = PdfWriter(clone_from=FILES / "two_pages.pdf")
    writer.encrypt("", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)

    document = extract(buffer.getvalue(), filename="restricted.pdf")

    assert [section.page for section in document.sections] == [1, 2]


def test_broken_pdf_is_rejected_with_a_reason() -> None:
    error = extraction_error(read_fixture("broken.pdf"), filename="broken.pdf")

    assert error.code == SOURCE_BROKEN_FILE
    assert error.message.startswith("The PDF could not be read (")


def test_file_named_pdf_that_is_not_a_pdf_is_broken() -> None:
    error = extraction_error(b"just some words", filename="report.pdf")

    assert error.code == SOURCE_BROKEN_FILE


def test_pdf_without_a_text_layer_is_empty_and_mentions_ocr() -> None:
    error = extraction_error(read_fixture("scanned.pdf"), filename="scanned.pdf")

    assert error.code == SOURCE_EMPTY
    assert "OCR is not supported" in error.message


# --- Format detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("a.txt", "text"),
        ("a.text", "text"),
        ("server.LOG", "text"),
        ("a.md", "markdown"),
        ("a.markdown", "markdown"),
        ("a.html", "html"),
        ("a.HTM", "html"),
        ("C:\\Users\\ann\\manual.pdf", "pdf"),
    ],
)
def test_format_is_detected_by_extension(filename: str, expected: str) -> None:
    assert detect_format(filename=filename, content_type=None, data=b"x") == expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain; charset=utf-8", "text"),
        ("text/markdown", "markdown"),
        ("text/html; charset=UTF-8", "html"),
        ("application/pdf", "pdf"),
        ("text/csv", "text"),
    ],
)
def test_format_is_detected_by_content_type(content_type: str, expected: str) -> None:
    assert detect_format(filename="upload", content_type=content_type, data=b"x") == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.7\n...", "pdf"),
        (b"\n<!DOCTYPE html><html>", "html"),
        (b"<!-- saved page --><HTML lang=en>", "html"),
        (b"Just a note", "text"),
        (b"", "text"),
    ],
)
def test_format_is_sniffed_from_the_first_bytes(data: bytes, expected: str) -> None:
    assert detect_format(filename=None, content_type="application/octet-stream", data=data) == (
        expected
    )


def test_extension_wins_over_content_type() -> None:
    assert detect_format(filename="a.md", content_type="text/plain", data=b"# x") == "markdown"


@pytest.mark.parametrize("filename", ["manual.docx", "photo.PNG", "archive.zip"])
def test_binary_extensions_are_unsupported_and_the_message_lists_formats(filename: str) -> None:
    error = extraction_error(b"PK\x03\x04", filename=filename)

    assert error.code == SOURCE_UNSUPPORTED_FORMAT
    assert "Markdown (.md" in error.message and "PDF (.pdf)" in error.message


def test_binary_content_type_is_unsupported() -> None:
    error = extraction_error(b"\x89PNG\r\n\x1a\n", filename="upload", content_type="image/png")

    assert error.code == SOURCE_UNSUPPORTED_FORMAT


def test_binary_data_with_an_unknown_extension_is_unsupported() -> None:
    error = extraction_error(b"PK\x03\x04\x14\x00\x06\x00", filename="export.dat")

    assert error.code == SOURCE_UNSUPPORTED_FORMAT


def test_extract_text_rejects_pdf_as_a_format() -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text("%PDF-1.7", format="pdf")

    assert caught.value.code == SOURCE_UNSUPPORTED_FORMAT


# --- Decoding errors and empty sources ----------------------------------------------------------


def test_invalid_utf8_is_rejected_with_the_byte_offset() -> None:
    error = extraction_error("Ventil geöffnet".encode("latin-1"), filename="notes.txt")

    assert error.code == SOURCE_INVALID_ENCODING
    assert "byte 0xF6 at offset 9" in error.message


def test_invalid_utf8_offset_counts_the_bom() -> None:
    error = extraction_error(codecs.BOM_UTF8 + b"ok \xff", filename="notes.txt")

    assert "offset 6" in error.message


def test_a_declared_charset_that_is_not_a_text_encoding_is_ignored() -> None:
    error = extraction_error(
        "geöffnet".encode("latin-1"), filename="a.txt", content_type="text/plain; charset=zlib"
    )

    assert error.code == SOURCE_INVALID_ENCODING


def test_binary_garbage_named_txt_is_rejected() -> None:
    garbage = b"\x89PNG\r\n\x1a\n" + random.Random(7).randbytes(2000)

    error = extraction_error(garbage, filename="notes.txt")

    assert error.code == SOURCE_BINARY_CONTENT


def test_random_bytes_named_txt_are_binary_not_badly_encoded() -> None:
    error = extraction_error(random.Random(11).randbytes(4000), filename="notes.txt")

    assert error.code == SOURCE_BINARY_CONTENT


def test_text_made_mostly_of_nul_bytes_is_binary() -> None:
    error = extraction_error(b"ab" + b"\x00" * 100, filename="notes.txt")

    assert error.code == SOURCE_BINARY_CONTENT


@pytest.mark.parametrize("data", [b"", b"  \r\n\t\n", codecs.BOM_UTF8 + b"\n \n"])
def test_empty_or_whitespace_only_file_is_empty(data: bytes) -> None:
    assert extraction_error(data, filename="notes.txt").code == SOURCE_EMPTY


def test_whitespace_only_text_through_the_api_is_empty() -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text(" \n\u3000\n")

    assert caught.value.code == SOURCE_EMPTY
