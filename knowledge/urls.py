from django.urls import path

from knowledge.views import answers, index, search, sources

app_name = "knowledge"
urlpatterns = [
    path("sources/", sources.source_list, name="source-list"),
    path("sources/upload/", sources.source_upload, name="source-upload"),
    path("sources/text/", sources.source_create_text, name="source-text"),
    path("sources/<int:source_id>/", sources.source_detail, name="source-detail"),
    path("sources/<int:source_id>/enabled/", sources.source_set_enabled, name="source-enabled"),
    path("chunks/<int:chunk_id>/", sources.chunk_detail, name="chunk-detail"),
    path("chunks/<int:chunk_id>/edit/", sources.chunk_edit, name="chunk-edit"),
    path("chunks/<int:chunk_id>/flags/", sources.chunk_set_flags, name="chunk-flags"),
    path("index/", index.index_status, name="index-status"),
    path("index/rebuild/", index.index_rebuild, name="index-rebuild"),
    path("index/clear/", index.index_clear, name="index-clear"),
    path("index/switch/", index.index_switch, name="index-switch"),
    path("search/", search.search_page, name="search"),
    path("ask/", answers.ask_page, name="ask"),
    path("ask/stream/", answers.ask_stream, name="ask-stream"),
    path("answers/<int:answer_id>/", answers.answer_detail, name="answer-detail"),
    path("answers/<int:answer_id>/feedback/", answers.answer_feedback_view, name="answer-feedback"),
    path("answers/feedback-queue/", answers.answer_queue, name="answer-queue"),
    path("answers/gaps/", answers.content_gaps, name="content-gaps"),
]
