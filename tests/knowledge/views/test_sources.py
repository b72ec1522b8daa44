from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from knowledge.ingest.ingestion import source_ingest_file, source_ingest_text
from knowledge.models import EmbeddingStatus, KnowledgeChunk, KnowledgeSource, SourceStatus
from knowledge.views import sources as views
from tests.helpers import visible_text

pytestmark = pytest.mark.django_db

FILES = Path(__file__).parent.parent / "files"
HTMX = {"HX-Request": "true"}
MARKDOWN = (
    "# Pump P-200\n\nRead this before servicing the pump.\n\n"
    "## Installation\n\nMount the pump on a level base.\n\n"
    "## Priming\n\nFill the casing with water before the first start.\n"
)
GARBAGE = b"\x00\x01\x02garbage\xff\xfe"


def ingest(text: str = MARKDOWN, **kwargs) -> KnowledgeSource:
    kwargs.setdefault("text_format", "markdown")
    return source_ingest_text(text=text, **kwargs).source


def upload(client, name: str, data: bytes, **fields):
    fields.setdefault("source_type", "manual")
    return client.post(
        "/knowledge/sources/upload/",
        {"file": SimpleUploadedFile(name, data), **fields},
        headers=HTMX,
    )


# --- Source list ------------------------------------------------------------------------------


def test_pages_need_a_login(client):
    source = ingest()
    for url in ("/knowledge/sources/", f"/knowledge/sources/{source.pk}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_list_shows_sources_with_status_badges_and_counts(curator):
    ingest(title="Pump P-200 manual")
    source_ingest_file(data=GARBAGE, filename="x.txt", title="Broken upload")

    response = curator.get("/knowledge/sources/")

    body = response.content.decode()
    assert response.status_code == 200
    assert "Pump P-200 manual" in body
    assert 'class="badge source-status status-pending">Pending<' in body
    assert 'class="badge source-status status-failed">Failed<' in body
    assert ">Sources<" in body and "knowledge.css" in body


def test_list_shows_the_error_of_failed_sources(curator):
    source_ingest_file(data=GARBAGE, filename="x.txt")

    text = visible_text(curator.get("/knowledge/sources/"))

    assert "SOURCE_BINARY_CONTENT The file looks like binary data" in text


def test_filters_answer_htmx_requests_with_only_the_table(curator):
    ingest(title="Healthy manual")
    source_ingest_file(data=GARBAGE, filename="x.txt", title="Broken upload")

    response = curator.get("/knowledge/sources/?status=failed", headers=HTMX)

    body = response.content.decode()
    assert "<html" not in body and "<table" in body
    assert "Broken upload" in body
    assert "Healthy manual" not in body
    assert "HX-Request" in response["Vary"]  # caches keep the page and the fragment apart


def test_type_enabled_and_text_filters_narrow_the_list(curator):
    ingest(title="Pump manual", source_type="manual")
    ingest("# Other\n\nFAQ text.", title="Valve FAQ", source_type="faq")
    hidden = ingest("# Old\n\nOld text.", title="Old pump SOP", source_type="sop")
    KnowledgeSource.objects.filter(pk=hidden.pk).update(enabled=False)

    def titles(query: str) -> set[str]:
        body = curator.get(f"/knowledge/sources/?{query}", headers=HTMX).content.decode()
        return {title for title in ("Pump manual", "Valve FAQ", "Old pump SOP") if title in body}

    assert titles("source_type=faq") == {"Valve FAQ"}
    assert titles("enabled=false") == {"Old pump SOP"}
    assert titles("enabled=true&q=pump") == {"Pump manual"}
    assert titles("status=bogus") == {"Pump manual", "Valve FAQ", "Old pump SOP"}


def test_list_shows_fifty_sources_per_page(curator):
    for number in range(51):
        ingest(f"Note {number}", text_format="text", title=f"Note {number:02d}")

    first = curator.get("/knowledge/sources/").content.decode()
    second = curator.get("/knowledge/sources/?page=2", headers=HTMX).content.decode()

    assert first.count('<tr id="source-') == 50
    assert "Page 1 of 2" in first
    assert second.count('<tr id="source-') == 1
    assert "Note 00" in second  # oldest last


# --- Upload and paste -------------------------------------------------------------------------


def test_upload_creates_a_source_and_reports_its_chunk_count(curator):
    response = upload(curator, "pump.md", MARKDOWN.encode(), metadata='{"product": "P-200"}')

    source = KnowledgeSource.objects.get()
    assert response.status_code == 200
    assert response["HX-Trigger"] == "sources-changed"  # the table reloads itself
    assert f"Created 'Pump P-200' — {source.chunks.count()} chunks" in visible_text(response)
    assert source.chunks.count() == 3
    assert source.source_type == "manual"
    assert source.metadata["product"] == "P-200"


def test_upload_of_binary_garbage_reports_the_error_and_lists_the_source_as_failed(curator):
    response = upload(curator, "x.txt", GARBAGE)

    assert "Failed: SOURCE_BINARY_CONTENT The file looks like binary data" in visible_text(response)
    assert KnowledgeSource.objects.get().status == SourceStatus.FAILED
    listing = curator.get("/knowledge/sources/?status=failed", headers=HTMX).content.decode()
    assert "x.txt" in listing and "SOURCE_BINARY_CONTENT" in listing


def test_upload_of_an_encrypted_pdf_reports_the_encryption(curator):
    response = upload(curator, "secret.pdf", (FILES / "encrypted.pdf").read_bytes())

    assert "SOURCE_ENCRYPTED_PDF The PDF is encrypted" in visible_text(response)
    assert KnowledgeSource.objects.get().status == SourceStatus.FAILED


def test_upload_over_the_size_limit_is_refused_with_a_clear_message(curator, settings):
    settings.KIOKU_MAX_UPLOAD_BYTES = 100

    response = upload(curator, "big.txt", b"a" * 250)

    text = visible_text(response)
    assert "Nothing was stored." in text
    assert "Too large: 250 bytes (250 bytes). The upload limit is 100 bytes" in text
    assert "KIOKU_MAX_UPLOAD_BYTES" in text
    assert not response.has_header("HX-Trigger")
    assert not KnowledgeSource.objects.exists()


def test_upload_with_metadata_that_is_not_a_json_object_is_refused(curator):
    response = upload(curator, "pump.md", MARKDOWN.encode(), metadata="[1, 2]")

    assert "Metadata (JSON): Metadata must be a JSON object" in visible_text(response)
    assert not KnowledgeSource.objects.exists()


def test_uploading_again_under_the_same_identifier_reports_unchanged(curator):
    upload(curator, "pump.md", MARKDOWN.encode(), uri="manuals/pump.md")

    response = upload(curator, "pump.md", MARKDOWN.encode(), uri="manuals/pump.md")

    assert "Unchanged — 'Pump P-200' already holds this content." in visible_text(response)
    assert KnowledgeSource.objects.count() == 1


def test_pasted_text_becomes_a_source(curator):
    response = curator.post(
        "/knowledge/sources/text/",
        {
            "title": "Reset tip",
            "source_type": "faq",
            "text_format": "text",
            "text": "Hold reset 5 s.",
        },
        headers=HTMX,
    )

    assert "Created 'Reset tip' — 1 chunk" in visible_text(response)
    source = KnowledgeSource.objects.get()
    assert (source.source_type, source.chunks.get().content) == ("faq", "Hold reset 5 s.")


def test_upload_without_htmx_shows_the_outcome_on_the_whole_page(curator):
    response = curator.post(
        "/knowledge/sources/upload/",
        {"file": SimpleUploadedFile("pump.md", MARKDOWN.encode()), "source_type": "manual"},
    )

    assert "<html" in response.content.decode()
    assert "Created 'Pump P-200' — 3 chunks" in visible_text(response)


# --- Source detail and chunks -----------------------------------------------------------------


def test_detail_shows_the_header_and_the_chunks_in_order_with_locations(curator):
    source = ingest(title="Pump P-200", metadata={"product": "P-200", "models": ["A", "B"]})
    chunks = list(source.chunks.order_by("ordinal"))

    response = curator.get(f"/knowledge/sources/{source.pk}/")

    body = response.content.decode()
    text = visible_text(response)
    assert [f'id="chunk-{chunk.pk}"' in body for chunk in chunks] == [True] * 3
    assert body.index(f'id="chunk-{chunks[0].pk}"') < body.index(f'id="chunk-{chunks[2].pk}"')
    assert "#1 Pump P-200 › Installation" in text
    assert "embedding pending" in text
    assert "<dt>product</dt><dd>P-200</dd>" in body
    assert "<dt>models</dt><dd>[&quot;A&quot;, &quot;B&quot;]</dd>" in body


def test_detail_answers_htmx_with_the_header_alone(curator):
    source = ingest()

    body = curator.get(f"/knowledge/sources/{source.pk}/", headers=HTMX).content.decode()

    assert 'id="source-header"' in body
    assert "<html" not in body and "article" not in body


def test_detail_of_a_failed_source_shows_its_error(curator):
    source = source_ingest_file(data=GARBAGE, filename="x.txt").source

    text = visible_text(curator.get(f"/knowledge/sources/{source.pk}/"))

    assert "SOURCE_BINARY_CONTENT The file looks like binary data" in text
    assert "No chunks: the document could not be read." in text


def test_detail_pages_chunks(curator, monkeypatch):
    monkeypatch.setattr(views, "CHUNKS_PER_PAGE", 2)
    source = ingest()
    last = source.chunks.get(ordinal=2)

    body = curator.get(f"/knowledge/sources/{source.pk}/?page=2").content.decode()

    assert body.count('<article class="chunk') == 1
    assert f'id="chunk-{last.pk}"' in body
    assert "Chunks 3–3 of 3" in body


def test_chunk_link_redirects_to_the_page_and_anchor_holding_it(curator, monkeypatch):
    monkeypatch.setattr(views, "CHUNKS_PER_PAGE", 2)
    source = ingest()
    first, last = source.chunks.get(ordinal=0), source.chunks.get(ordinal=2)

    assert curator.get(f"/knowledge/chunks/{first.pk}/")["Location"] == (
        f"/knowledge/sources/{source.pk}/#chunk-{first.pk}"
    )
    assert curator.get(f"/knowledge/chunks/{last.pk}/")["Location"] == (
        f"/knowledge/sources/{source.pk}/?page=2#chunk-{last.pk}"
    )


def test_edit_swaps_in_a_form_holding_the_chunk_text(curator):
    chunk = ingest().chunks.get(ordinal=1)

    body = curator.get(f"/knowledge/chunks/{chunk.pk}/edit/", headers=HTMX).content.decode()

    assert body.startswith(f'<article class="chunk is-editing" id="chunk-{chunk.pk}">')
    assert "<textarea" in body and "Mount the pump on a level base." in body


def test_saving_an_edit_changes_the_text_and_queues_the_chunk_for_embedding(curator):
    source = ingest()
    chunk = source.chunks.get(ordinal=1)
    KnowledgeChunk.objects.filter(pk=chunk.pk).update(embedding_status=EmbeddingStatus.DONE)
    KnowledgeSource.objects.filter(pk=source.pk).update(status=SourceStatus.READY)

    response = curator.post(
        f"/knowledge/chunks/{chunk.pk}/edit/",
        {"content": "Mount the pump on a level concrete base."},
        headers=HTMX,
    )

    chunk.refresh_from_db()
    assert chunk.content == "Mount the pump on a level concrete base."
    assert chunk.embedding_status == EmbeddingStatus.PENDING
    assert KnowledgeSource.objects.get(pk=source.pk).status == SourceStatus.PENDING
    assert response["HX-Trigger"] == "source-changed"  # the header shows the new status
    assert "level concrete base" in visible_text(response)
    assert 'embed-pending">embedding pending<' in response.content.decode()


def test_saving_empty_text_shows_the_error_and_keeps_the_chunk(curator):
    chunk = ingest().chunks.get(ordinal=1)

    response = curator.post(
        f"/knowledge/chunks/{chunk.pk}/edit/", {"content": "  \n"}, headers=HTMX
    )

    assert "is-editing" in response.content.decode()
    assert "CHUNK_EMPTY_CONTENT A chunk cannot be empty" in visible_text(response)
    chunk.refresh_from_db()
    assert chunk.content == "Mount the pump on a level base."


def test_cancel_swaps_the_row_back(curator):
    chunk = ingest().chunks.get(ordinal=1)

    body = curator.get(f"/knowledge/chunks/{chunk.pk}/", headers=HTMX).content.decode()

    assert body.startswith(f'<article class="chunk" id="chunk-{chunk.pk}">')
    assert "<textarea" not in body


def test_chunk_toggles_disable_and_pin(curator):
    chunk = ingest().chunks.get(ordinal=1)
    url = f"/knowledge/chunks/{chunk.pk}/flags/"

    disabled = curator.post(url, {"enabled": "false"}, headers=HTMX).content.decode()
    pinned = curator.post(url, {"pinned": "true"}, headers=HTMX).content.decode()

    chunk.refresh_from_db()
    assert (chunk.enabled, chunk.pinned) == (False, True)
    assert "is-disabled" in disabled and ">Enable</button>" in disabled
    assert 'flag-pinned">pinned<' in pinned and ">Unpin</button>" in pinned
    assert curator.post(url, {}, headers=HTMX).status_code == 400


def test_source_toggle_disables_it_and_swaps_the_header(curator):
    source = ingest()

    response = curator.post(
        f"/knowledge/sources/{source.pk}/enabled/", {"enabled": "false"}, headers=HTMX
    )

    body = response.content.decode()
    assert 'id="source-header"' in body and ">Enable source</button>" in body
    assert KnowledgeSource.objects.get(pk=source.pk).enabled is False


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/knowledge/sources/upload/", {"source_type": "manual"}),
        ("/knowledge/sources/text/", {"text": "x", "text_format": "text", "source_type": "faq"}),
        ("/knowledge/sources/{source}/enabled/", {"enabled": "false"}),
        ("/knowledge/chunks/{chunk}/edit/", {"content": "changed"}),
        ("/knowledge/chunks/{chunk}/flags/", {"pinned": "true"}),
    ],
)
def test_users_who_are_not_staff_get_403_on_writes(agent, path, form):
    source = ingest()
    chunk = source.chunks.first()

    response = agent.post(path.format(source=source.pk, chunk=chunk.pk), form, headers=HTMX)

    assert response.status_code == 403
    chunk.refresh_from_db()
    assert (chunk.content, chunk.pinned) == ("Read this before servicing the pump.", False)
    assert KnowledgeSource.objects.get().enabled is True


def test_users_who_are_not_staff_read_without_edit_buttons(agent):
    source = ingest()

    list_body = agent.get("/knowledge/sources/").content.decode()
    detail_body = agent.get(f"/knowledge/sources/{source.pk}/").content.decode()

    assert "Pump P-200" in list_body and "Upload a file" not in list_body
    assert "Mount the pump" in detail_body
    assert ">Edit</a>" not in detail_body and "Disable source" not in detail_body


def test_script_in_titles_and_chunk_text_is_escaped(curator):
    source = ingest(
        "<script>alert('chunk')</script> Reset the pump.",
        text_format="text",
        title="<script>alert('title')</script>",
        metadata={"note": "<b>bold</b>"},
    )

    detail = curator.get(f"/knowledge/sources/{source.pk}/").content.decode()
    listing = curator.get("/knowledge/sources/").content.decode()

    for body in (detail, listing):
        assert "<script>alert(" not in body
    assert "&lt;script&gt;alert(&#x27;chunk&#x27;)&lt;/script&gt;" in detail
    assert "&lt;b&gt;bold&lt;/b&gt;" in detail


# --- In the browser ---------------------------------------------------------------------------


@pytest.mark.browser
def test_a_curator_uploads_a_manual_and_edits_a_chunk(logged_in_page, tmp_path, screenshot):
    page = logged_in_page
    manual = tmp_path / "pump.md"
    manual.write_text(MARKDOWN, encoding="utf-8")

    page.goto("/knowledge/sources/")
    page.set_input_files("#upload_file", str(manual))
    page.get_by_role("button", name="Upload").click()

    expect(page.locator("#ingest-result")).to_contain_text("Created 'Pump P-200' — 3 chunks")
    expect(page.locator("#source-table")).to_contain_text("Pump P-200")
    screenshot(page, "source_list")
    page.locator("#source-table").get_by_role("link", name="Pump P-200").click()

    expect(page.locator("h1")).to_have_text("Pump P-200")
    installation = page.locator("article.chunk", has_text="Mount the pump")
    expect(installation).to_contain_text("Pump P-200 › Installation")
    expect(page.locator("article.chunk").nth(2)).to_contain_text("Pump P-200 › Priming")

    installation.get_by_role("link", name="Edit").click()
    editor = page.locator("article.chunk.is-editing textarea")
    expect(editor).to_have_value("Mount the pump on a level base.")
    editor.fill("Mount the pump on a level concrete base.\n\nCheck it with a spirit level.")
    screenshot(page, "chunk_edit")
    page.get_by_role("button", name="Save").click()

    expect(page.locator("article.chunk.is-editing")).to_have_count(0)
    edited = page.locator("article.chunk", has_text="level concrete base")
    expect(edited).to_contain_text("Check it with a spirit level.")
    expect(edited).to_contain_text("Pump P-200 › Installation")
    path = screenshot(page, "source_detail")
    assert path.stat().st_size > 5_000
