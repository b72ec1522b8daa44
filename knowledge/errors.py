"""Every error code the knowledge app answers with: stable strings clients may match on
(`{"code", "message", "details"}`, see core/errors.py). One line each says when it is sent."""

# --- Sources: ingestion and curation ------------------------------------------------------------
SOURCE_TOO_LARGE = "SOURCE_TOO_LARGE"  # over KIOKU_MAX_UPLOAD_BYTES (413)
SOURCE_UNSUPPORTED_FORMAT = "SOURCE_UNSUPPORTED_FORMAT"  # not text, Markdown, HTML or PDF
SOURCE_EMPTY = "SOURCE_EMPTY"  # no text to index
SOURCE_INVALID_ENCODING = "SOURCE_INVALID_ENCODING"  # text in no encoding we can read
SOURCE_ENCRYPTED_PDF = "SOURCE_ENCRYPTED_PDF"  # a password-protected PDF
SOURCE_BROKEN_FILE = "SOURCE_BROKEN_FILE"  # a PDF (or other file) that cannot be parsed
SOURCE_BINARY_CONTENT = "SOURCE_BINARY_CONTENT"  # bytes that are not text
SOURCE_INVALID_TYPE = "SOURCE_INVALID_TYPE"  # source_type outside SourceType
SOURCE_INVALID_TITLE = "SOURCE_INVALID_TITLE"  # an empty title
SOURCE_INVALID_SUPERSEDE = "SOURCE_INVALID_SUPERSEDE"  # a source superseding itself or a cycle
CHUNK_EMPTY_CONTENT = "CHUNK_EMPTY_CONTENT"  # a chunk edited to nothing (disable it instead)
# A per-type chunking setting (KIOKU_CHUNKING) that cannot split text.
CHUNKING_INVALID_CONFIG = "VECTOR_INDEX_INVALID_TEXT_SPLITTER_CONFIG"

# --- Web sources ---------------------------------------------------------------------------------
WEB_INVALID_URL = "WEB_INVALID_URL"  # not an absolute http(s) URL (422)
WEB_FORBIDDEN_HOST = "WEB_FORBIDDEN_HOST"  # a private or loopback host, not allowed here
WEB_FETCH_FAILED = "WEB_FETCH_FAILED"  # DNS, connection or HTTP failure at the remote site (502)
WEB_FETCH_TIMEOUT = "WEB_FETCH_TIMEOUT"  # no answer within KIOKU_WEB_TIMEOUT_SECONDS
WEB_TOO_LARGE = "WEB_TOO_LARGE"  # the page is over KIOKU_WEB_MAX_BYTES

# --- Search --------------------------------------------------------------------------------------
SEARCH_EMPTY_QUERY = "SEARCH_EMPTY_QUERY"
SEARCH_QUERY_TOO_LONG = "SEARCH_QUERY_TOO_LONG"  # over KIOKU_SEARCH_MAX_QUERY_CHARS
SEARCH_INVALID_MODE = "SEARCH_INVALID_MODE"  # not vector, keyword or hybrid
SEARCH_INVALID_THRESHOLD = "SEARCH_INVALID_THRESHOLD"  # min_similarity outside -1…1
SEARCH_INVALID_FILTER = "SEARCH_INVALID_FILTER"  # unknown filter key or bad value
SEARCH_INVALID_TOP_K = "VECTOR_INDEX_INVALID_TOP_K"  # top_k outside 1…100
SEARCH_INDEX_EMPTY = "VECTOR_INDEX_EMPTY"  # nothing ingested yet (409)
SEARCH_INDEX_NOT_AVAILABLE = "VECTOR_INDEX_NOT_AVAILABLE"  # nothing embedded yet (409)
# The query could not be embedded (provider down, key missing) in vector mode (503).
SEARCH_EMBEDDING_FAILED = "VECTOR_INDEX_EMBEDDING_GENERATION_FAILED"
# Reranking asked for (`rerank: true`), but no reranker is configured (KIOKU_RERANKER) (409).
SEARCH_RERANKER_NOT_CONFIGURED = "SEARCH_RERANKER_NOT_CONFIGURED"

# --- Answers -------------------------------------------------------------------------------------
ASK_EMPTY_QUESTION = "ASK_EMPTY_QUESTION"
ASK_INVALID_TOP_K = "ASK_INVALID_TOP_K"  # top_k outside 1…20
ASK_LLM_API_ERROR = "ASK_LLM_API_ERROR"  # the chat model failed after its retries (502)
ASK_EMPTY_CONTENT = "ASK_EMPTY_CONTENT"  # the chat model answered with nothing (502)
ANSWER_FEEDBACK_TOO_LONG = "ANSWER_FEEDBACK_TOO_LONG"  # a comment over 2,000 characters

# Earlier names of codes, still sent in the error body's "aliases" (and kept on stored answers'
# meaning), so clients written against them keep working. Documented in the README.
ALIASES: dict[str, tuple[str, ...]] = {
    ASK_EMPTY_QUESTION: ("VECTOR_INDEX_EMPTY_QUESTION",),
    ASK_INVALID_TOP_K: ("VECTOR_INDEX_INVALID_TOP_K",),
    ASK_LLM_API_ERROR: ("VECTOR_INDEX_LLM_API_ERROR",),
    ASK_EMPTY_CONTENT: ("VECTOR_INDEX_EMPTY_CONTENT",),
}
