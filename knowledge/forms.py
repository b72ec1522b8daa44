"""Forms for the curator pages: they check the shape of input; services decide the rest."""

import json

from django import forms

from knowledge.ingest.parsers import TEXT_FORMATS
from knowledge.models import SourceStatus, SourceType

TEXT_FORMAT_LABELS = {"text": "Plain text", "markdown": "Markdown", "html": "HTML"}
UPLOAD_ACCEPT = ".txt,.text,.log,.md,.markdown,.html,.htm,.pdf"


def _boolean_choice(*, label: str, blank: str | None) -> forms.TypedChoiceField:
    """A "true"/"false" choice: None when left blank (filters, partial updates)."""
    choices = [("true", "Yes"), ("false", "No")]
    return forms.TypedChoiceField(
        label=label,
        choices=[("", blank), *choices] if blank is not None else choices,
        coerce=lambda value: value == "true",
        empty_value=None,
        required=blank is None,
    )


class MetadataField(forms.CharField):
    """Optional JSON object typed into a textarea."""

    widget = forms.Textarea(attrs={"rows": 2, "placeholder": '{"product": "P-200"}'})

    def to_python(self, value) -> dict:
        value = super().to_python(value).strip()
        if not value:
            return {}
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise forms.ValidationError(
                "Metadata is not valid JSON (%(problem)s).",
                code="invalid_json",
                params={"problem": exc},
            ) from None
        if not isinstance(parsed, dict):
            raise forms.ValidationError(
                'Metadata must be a JSON object, like {"product": "P-200"}.', code="not_object"
            )
        return parsed


class SourceFilterForm(forms.Form):
    source_type = forms.ChoiceField(
        label="Type", choices=[("", "All types"), *SourceType.choices], required=False
    )
    status = forms.ChoiceField(
        label="Status", choices=[("", "Any status"), *SourceStatus.choices], required=False
    )
    enabled = _boolean_choice(label="Enabled", blank="Enabled or not")
    q = forms.CharField(
        label="Search",
        max_length=200,
        required=False,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Title or URI"}),
    )

    # The list page holds three forms whose field names overlap; distinct id prefixes keep each
    # label pointing at its own input.
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", "filter_%s")
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class SourceUploadForm(forms.Form):
    # Empty files reach the ingestion, which records them as failed with SOURCE_EMPTY.
    file = forms.FileField(
        allow_empty_file=True, widget=forms.FileInput(attrs={"accept": UPLOAD_ACCEPT})
    )
    source_type = forms.ChoiceField(
        label="Type", choices=SourceType.choices, initial=SourceType.DOCUMENT
    )
    title = forms.CharField(
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "From the document"}),
    )
    uri = forms.CharField(
        label="Identifier",
        max_length=2000,
        required=False,
        help_text="Optional. Uploading again with the same identifier updates that source.",
    )
    metadata = MetadataField(label="Metadata (JSON)", required=False)

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", "upload_%s")
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class SourceTextForm(forms.Form):
    title = forms.CharField(
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "From the text"}),
    )
    source_type = forms.ChoiceField(
        label="Type", choices=SourceType.choices, initial=SourceType.DOCUMENT
    )
    text_format = forms.ChoiceField(
        label="Format",
        choices=[(value, TEXT_FORMAT_LABELS.get(value, value)) for value in TEXT_FORMATS],
    )
    text = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 5}))
    metadata = MetadataField(label="Metadata (JSON)", required=False)

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", "text_%s")
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class ChunkForm(forms.Form):
    # Not required and not stripped: whether the text is acceptable is chunk_update's decision.
    content = forms.CharField(
        label="Text", required=False, strip=False, widget=forms.Textarea(attrs={"rows": 8})
    )


class ChunkFlagsForm(forms.Form):
    enabled = _boolean_choice(label="Enabled", blank="")
    pinned = _boolean_choice(label="Pinned", blank="")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("enabled") is None and cleaned.get("pinned") is None:
            raise forms.ValidationError("Say what to change: enabled or pinned.", code="empty")
        return cleaned


class SourceEnabledForm(forms.Form):
    enabled = _boolean_choice(label="Enabled", blank=None)
