"""Every error code the quality app answers with (`{"code", "message", "details"}`, see
core/errors.py). One line each says when it is sent."""

EVAL_SET_NAME_TAKEN = "EVAL_SET_NAME_TAKEN"  # another evaluation set has that name (409)
EVAL_SET_NOT_FOUND = "EVAL_SET_NOT_FOUND"  # no evaluation set with that name or id (404)
EVAL_CASE_EMPTY_QUESTION = "EVAL_CASE_EMPTY_QUESTION"  # a case without a question
EVAL_CASE_INVALID = "EVAL_CASE_INVALID"  # a case field of the wrong type or out of bounds
EVAL_CASE_UNKNOWN_SOURCE = "EVAL_CASE_UNKNOWN_SOURCE"  # an expected source/chunk that is not stored
EVAL_CASE_NOT_ELIGIBLE = (
    "EVAL_CASE_NOT_ELIGIBLE"  # e.g. a card that is not resolved, a helpful answer
)
EVAL_IMPORT_INVALID_LINE = (
    "EVAL_IMPORT_INVALID_LINE"  # a JSONL line that is not a case (line number given)
)
EVAL_RUN_INVALID_MODE = "EVAL_RUN_INVALID_MODE"  # not vector, keyword, hybrid or all
EVAL_RUN_EMPTY_SET = "EVAL_RUN_EMPTY_SET"  # a set with no active case (409)
EVAL_RUN_NO_RERANKER = "EVAL_RUN_NO_RERANKER"  # a run with the reranker, none configured (409)
CALIBRATION_NO_SUGGESTION = (
    "CALIBRATION_NO_SUGGESTION"  # too few labelled points, or none separate (409)
)
CALIBRATION_STALE = "CALIBRATION_STALE"  # the suggestion changed since the page showed it (409)
EVAL_SET_INVALID_NAME = "EVAL_SET_INVALID_NAME"  # an empty set name, or one over 100 characters
RETRIEVAL_TEST_INVALID = "RETRIEVAL_TEST_INVALID"  # variants or top_k of the wrong shape (422)
RETRIEVAL_TEST_NOT_FOUND = "RETRIEVAL_TEST_NOT_FOUND"  # no retrieval test with that id (404)
RETRIEVAL_HIT_NOT_FOUND = "RETRIEVAL_HIT_NOT_FOUND"  # the chunk is not among the test's hits (404)
# A variant sets a search option (rerank, use_feedback) this build's search does not have yet:
# shown in that variant's column.
RETRIEVAL_OPTION_UNAVAILABLE = "RETRIEVAL_OPTION_UNAVAILABLE"
