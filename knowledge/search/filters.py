"""Search filters: validated against an allow-list, then resolved to the source ids in scope."""

from datetime import datetime

from django.conf import settings
from django.utils.dateparse import parse_date, parse_datetime

from core.pagination import BIGINT_MAX
from core.replicas import read_connection
from core.schemas import utc_datetime
from knowledge.errors import SEARCH_INVALID_FILTER
from knowledge.models import (
    SourceType,
    searchable_chunk_sql,
    searchable_source_sql,
)
from knowledge.search.base import SearchError, SearchFilters, SearchScope
from knowledge.search.sql import SOURCE


def _invalid_filter(message: str, key: str) -> SearchError:
    return SearchError(SEARCH_INVALID_FILTER, message, details={"filter": key})


def _as_list(value: object, key: str) -> list:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str | int):
        return [value]
    raise _invalid_filter(f"Filter {key!r} must be a value or a list of values.", key)


def _as_datetime(value: object, key: str, *, end: bool = False) -> datetime:
    from django.utils import timezone

    if not isinstance(value, str):
        raise _invalid_filter(f"Filter {key!r} must be an ISO date or datetime string.", key)
    try:
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:
        day = moment = None
    if day is not None:
        # A bare date covers the whole day: from its first to its last moment.
        moment = datetime.combine(day, datetime.max.time() if end else datetime.min.time())
    elif moment is None:
        raise _invalid_filter(f"Filter {key!r}: {value!r} is not an ISO date (YYYY-MM-DD).", key)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    try:
        return utc_datetime(moment)  # PostgreSQL refuses offsets past ±15:59 (a 500 before)
    except ValueError:
        raise _invalid_filter(
            f"Filter {key!r}: {value!r} is outside the years 1–9999.", key
        ) from None


def parse_filters(raw: dict | None) -> SearchFilters:
    """Validate filters against the allow-list. Unknown keys or bad values → SEARCH_INVALID_FILTER."""
    if not raw:
        return SearchFilters()
    if not isinstance(raw, dict):
        raise _invalid_filter("Filters must be an object.", "filters")
    values: dict = {}
    metadata: list[tuple[str, str]] = []
    for key, value in raw.items():
        if value is None or value == [] or value == "":
            continue
        if key == "metadata":
            metadata.extend(_metadata_filters(value))
        else:
            name, parsed = _filter_value(key, value)
            values[name] = parsed
    for start, end in (("created_from", "created_to"), ("fetched_from", "fetched_to")):
        if start in values and end in values and values[start] > values[end]:
            raise _invalid_filter(f"{start} is after {end}.", start)
    return SearchFilters(metadata=tuple(sorted(metadata)), **values)


def _filter_value(key: str, value: object) -> tuple[str, object]:
    """One filter other than metadata: the SearchFilters field it sets, and its checked value."""
    if key in ("source_type", "source_types"):
        types = _as_list(value, key)
        unknown = [t for t in types if t not in SourceType.values]
        if unknown:
            raise _invalid_filter(
                f"Unknown source type(s) {unknown}; use {', '.join(SourceType.values)}.", key
            )
        return "source_types", tuple(types)
    if key in ("source_id", "source_ids"):
        ids = _as_list(value, key)
        if not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 < i <= BIGINT_MAX for i in ids
        ):
            raise _invalid_filter(f"Filter {key!r} must hold positive integer ids.", key)
        return "source_ids", tuple(ids)
    if key in ("created_from", "created_to", "fetched_from", "fetched_to"):
        return key, _as_datetime(value, key, end=key.endswith("_to"))
    if key in ("channel", "user"):
        if not isinstance(value, str) or len(value) > 200:
            raise _invalid_filter(
                f"Filter {key!r} must be a string of at most 200 characters.", key
            )
        return key, value
    raise _invalid_filter(
        f"Unknown filter {key!r}. Allowed: source_type, source_id, metadata, created_from, "
        "created_to, fetched_from, fetched_to, channel, user.",
        key,
    )


def _metadata_filters(value: object) -> list[tuple[str, str]]:
    """The metadata filter's (key, value) pairs; only keys in KIOKU_SEARCH_METADATA_FILTERS,
    values compared as text (booleans as JSON spells them)."""
    if not isinstance(value, dict):
        raise _invalid_filter("Filter 'metadata' must be an object of key: value.", "metadata")
    allowed = set(settings.KIOKU_SEARCH_METADATA_FILTERS)
    pairs = []
    for meta_key, meta_value in value.items():
        if meta_key not in allowed:
            raise _invalid_filter(
                f"Metadata key {meta_key!r} cannot be filtered on; allowed: "
                f"{', '.join(sorted(allowed)) or 'none'} (KIOKU_SEARCH_METADATA_FILTERS).",
                f"metadata.{meta_key}",
            )
        if not isinstance(meta_value, str | int | bool):
            raise _invalid_filter(f"Metadata filter {meta_key!r} needs a plain value.", "metadata")
        pairs.append(
            (meta_key, str(meta_value).lower() if isinstance(meta_value, bool) else str(meta_value))
        )
    return pairs


def resolve_scope(filters: SearchFilters) -> SearchScope:
    if filters.is_empty():
        return SearchScope()
    clauses = [searchable_source_sql(SOURCE)]
    params: list = []
    if filters.source_types:
        clauses.append("source_type = ANY(%s)")
        params.append(list(filters.source_types))
    if filters.source_ids:
        clauses.append("id = ANY(%s)")
        params.append(list(filters.source_ids))
    for key, value in filters.metadata:
        # Matches a plain value and a list containing it ("brand": "Kagiya", "models": [...]).
        clauses.append("metadata -> %s @> to_jsonb(%s::text)")
        params.extend([key, value])
    for name, column, op in (
        ("created_from", "created_at", ">="),
        ("created_to", "created_at", "<="),
        ("fetched_from", "fetched_at", ">="),
        ("fetched_to", "fetched_at", "<="),
    ):
        value = getattr(filters, name)
        if value is not None:
            clauses.append(f"{column} {op} %s")
            params.append(value)
    if filters.channel:
        clauses.append("metadata ->> 'channel' = %s")
        params.append(filters.channel)
    if filters.user:
        clauses.append("metadata -> 'participants' ? %s")
        params.append(filters.user)
    with read_connection().cursor() as cursor:
        cursor.execute(f"SELECT id FROM {SOURCE} WHERE {' AND '.join(clauses)} ORDER BY id", params)
        return SearchScope(tuple(row[0] for row in cursor.fetchall()))


def scope_where(scope: SearchScope) -> tuple[list[str], list]:
    """Conditions every search applies: searchable chunks of searchable sources in scope."""
    clauses = [searchable_chunk_sql("c", "s")]
    params: list = []
    if scope.source_ids is not None:
        clauses.append("c.source_id = ANY(%s)")
        params.append(list(scope.source_ids))
    return clauses, params
