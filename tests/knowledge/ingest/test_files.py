import pytest
from django.core.management import CommandError, call_command

from knowledge.ingest.files import file_uri, folder_sync
from knowledge.models import KnowledgeChunk, KnowledgeSource

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "manual.md").write_text("# Manual\n\n## Batteries\n\nUse eight AA batteries.\n")
    (tmp_path / "faq.txt").write_text("Why does it beep?\n\nLow battery.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "page.html").write_text(
        "<html><head><title>Page</title><script>evil()</script></head><body><h1>Hi</h1><p>Body text.</p></body></html>"
    )
    (tmp_path / ".hidden.md").write_text("# secret")
    (tmp_path / "image.png").write_bytes(b"\x89PNG....")
    return tmp_path


def test_ingest_command_ingests_a_folder_and_prints_a_summary(folder, capsys):
    call_command("ingest", str(folder), "--type", "manual", "--meta", "brand=Kagiya")
    out = capsys.readouterr().out
    assert "Sources: 3 created, 0 updated, 0 unchanged, 0 failed" in out
    assert KnowledgeSource.objects.filter(source_type="manual").count() == 3
    assert all(s.metadata["brand"] == "Kagiya" for s in KnowledgeSource.objects.all())
    assert not KnowledgeSource.objects.filter(uri__contains=".hidden").exists()
    html = KnowledgeSource.objects.get(uri=file_uri(folder / "sub" / "page.html"))
    assert "evil" not in " ".join(html.chunks.values_list("content", flat=True))


def test_ingest_command_second_run_reports_unchanged(folder, capsys):
    call_command("ingest", str(folder))
    capsys.readouterr()
    call_command("ingest", str(folder))
    assert "0 created, 0 updated, 3 unchanged" in capsys.readouterr().out


def test_ingest_command_reports_failures_without_stopping(folder, capsys):
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage")
    call_command("ingest", str(folder))
    captured = capsys.readouterr()
    assert "1 failed" in captured.out
    assert "broken.pdf" in captured.err and "SOURCE_BROKEN_FILE" in captured.err
    assert KnowledgeSource.objects.get(uri=file_uri(folder / "broken.pdf")).status == "failed"


def test_ingest_command_title_only_for_one_file(folder):
    with pytest.raises(CommandError, match="single file"):
        call_command("ingest", str(folder), "--title", "X")
    call_command("ingest", str(folder / "faq.txt"), "--title", "Customer FAQ", "--type", "faq")
    assert KnowledgeSource.objects.get().title == "Customer FAQ"


def test_ingest_command_rejects_missing_paths_and_bad_meta(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("ingest", str(tmp_path / "nope"))
    with pytest.raises(CommandError, match="key=value"):
        call_command("ingest", str(tmp_path), "--meta", "oops")


def test_sync_mirrors_the_folder(folder, capsys):
    first = folder_sync(folder, source_type="document")
    assert (first.created, first.removed) == (3, 0)
    (folder / "faq.txt").unlink()
    (folder / "manual.md").write_text(
        "# Manual\n\n## Batteries\n\nUse eight AA batteries. Or a 9V.\n"
    )
    (folder / "new.md").write_text("# New\n\nA new SOP.\n")
    second = folder_sync(folder, source_type="document")
    assert (second.created, second.updated, second.unchanged, second.removed) == (1, 1, 1, 1)
    assert second.documents == 3
    assert not KnowledgeSource.objects.filter(uri=file_uri(folder / "faq.txt")).exists()
    assert KnowledgeChunk.objects.filter(source__uri=file_uri(folder / "faq.txt")).count() == 0


def test_sync_command_prints_the_index_build_result(folder, capsys):
    call_command("ingest", "--sync", str(folder))
    out = capsys.readouterr().out
    assert "Index build: documents=3 entries=" in out and "duration=" in out


def test_sync_leaves_sources_of_other_folders_alone(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "a.txt").write_text("Other folder text.")
    folder_sync(other, source_type="document")
    folder_sync(folder, source_type="document")
    assert KnowledgeSource.objects.filter(uri=file_uri(other / "a.txt")).exists()
