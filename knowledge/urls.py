from django.urls import path

from knowledge import views

app_name = "knowledge"
urlpatterns = [
    path("sources/", views.source_list, name="source-list"),
    path("sources/upload/", views.source_upload, name="source-upload"),
    path("sources/text/", views.source_create_text, name="source-text"),
    path("sources/<int:source_id>/", views.source_detail, name="source-detail"),
    path("sources/<int:source_id>/enabled/", views.source_set_enabled, name="source-enabled"),
    path("chunks/<int:chunk_id>/", views.chunk_detail, name="chunk-detail"),
    path("chunks/<int:chunk_id>/edit/", views.chunk_edit, name="chunk-edit"),
    path("chunks/<int:chunk_id>/flags/", views.chunk_set_flags, name="chunk-flags"),
    path("index/", views.index_status, name="index-status"),
    path("index/rebuild/", views.index_rebuild, name="index-rebuild"),
    path("index/clear/", views.index_clear, name="index-clear"),
    path("index/switch/", views.index_switch, name="index-switch"),
    path("search/", views.search_page, name="search"),
    path("ask/", views.ask_page, name="ask"),
    path("ask/stream/", views.ask_stream, name="ask-stream"),
    path("answers/<int:answer_id>/", views.answer_detail, name="answer-detail"),
    path("answers/<int:answer_id>/feedback/", views.answer_feedback_view, name="answer-feedback"),
    path("answers/feedback-queue/", views.answer_queue, name="answer-queue"),
    path("answers/gaps/", views.content_gaps, name="content-gaps"),
]
