"""Typed request and response bodies of the service (pydantic; published in its OpenAPI schema).

Requests are strict (no string-to-int coercion, no booleans as numbers) and closed (an unknown
field is an error naming it), so every malformed request gets a 400 that names the field.
Sizes are bounded: k in [1, 1000], at most ``MAX_ITEMS`` ids and ``MAX_GENRES`` genres.

Each request model carries an OpenAPI ``example`` (the body Swagger UI's "Try it out" sends)
that the served data answers with 200; every answer says what its scores mean
(``score_kind``); ``document_errors`` adds the error answers the service really gives to the
OpenAPI schema BentoML generates (which lists 400/404/500 only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from recsys.schema import INT_IDS

MAX_K: Final = 1000
MAX_ITEMS: Final = 1000
MAX_GENRES: Final = 32
MAX_ID: Final = 2**63 - 1
EXAMPLE_USER: Final = 1
EXAMPLE_ITEM: Final = 1
EXAMPLE_ITEMS: Final = (1, 2)
"""Ids of the examples. The embedded synthetic data (``recsys.data.synthetic``) numbers users
``1..U`` and items ``1..I`` and gives every user at least 5 interactions, and MovieLens starts
at 1 too, so a model trained on either knows user 1 and items 1 and 2 (the served test
fixture's data: tests/serving/test_service.py sends every example). OpenAPI 3.0 (BentoML's)
reads ``example``, not JSON Schema's ``examples``: without it Swagger UI made up ids such as
2**63 - 1 from the bounds, and every "Try it out" request failed."""

UserId = Annotated[
    int,
    Field(ge=0, le=MAX_ID, description="raw user id", json_schema_extra={"example": EXAMPLE_USER}),
]
ItemId = Annotated[
    int,
    Field(ge=0, le=MAX_ID, description="raw item id", json_schema_extra={"example": EXAMPLE_ITEM}),
]
K = Annotated[int, Field(ge=1, le=MAX_K, description="list length")]
Genre = Annotated[str, Field(min_length=1, max_length=64)]
Genres = Annotated[
    list[Genre] | None,
    Field(
        max_length=MAX_GENRES,
        description="keep only items having at least one of these genres (case-insensitive)",
    ),
]
ItemIds = Annotated[list[ItemId], Field(min_length=1, max_length=MAX_ITEMS)]


def _strict(example: dict[str, Any]) -> ConfigDict:
    """Strict, closed, and with the body Swagger UI's "Try it out" sends."""
    return ConfigDict(strict=True, extra="forbid", json_schema_extra={"example": example})


class RecommendRequest(BaseModel):
    model_config = _strict({"user_id": EXAMPLE_USER, "k": 10, "exclude_seen": True})
    user_id: UserId
    k: K = 10
    exclude_seen: bool = Field(True, description="drop the user's training items")
    genres: Genres = None


class RecentItemsRequest(BaseModel):
    """An anonymous or new user, described by the items they just interacted with."""

    model_config = _strict({"item_ids": list(EXAMPLE_ITEMS), "k": 10})
    item_ids: ItemIds
    k: K = 10
    genres: Genres = None


class SimilarItemsRequest(BaseModel):
    model_config = _strict({"item_id": EXAMPLE_ITEM, "k": 10})
    item_id: ItemId
    k: K = 10


class ScoreRequest(BaseModel):
    model_config = _strict({"user_id": EXAMPLE_USER, "item_ids": list(EXAMPLE_ITEMS)})
    user_id: UserId
    item_ids: ItemIds


class ExplainRequest(RecommendRequest):
    model_config = _strict({"user_id": EXAMPLE_USER, "k": 3, "exclude_seen": True})


REQUESTS: Final[dict[str, type[BaseModel]]] = {
    "/recommend": RecommendRequest,
    "/recommend_recent": RecentItemsRequest,
    "/similar_items": SimilarItemsRequest,
    "/score": ScoreRequest,
    "/explain": ExplainRequest,
}
"""The request model of each data-plane route (integer ids)."""

MAX_ID_LENGTH: Final = 256
"""Longest string id a request may carry (UUIDs: 36; SKUs and names: tens)."""


def request_models(
    user_kind: str = INT_IDS,
    item_kind: str = INT_IDS,
    example_user: int | str | None = None,
    example_items: Sequence[int | str] = (),
) -> dict[str, type[BaseModel]]:
    """The request model of each route for a model whose user and item ids are of these kinds
    (each side its own: text user ids with integer SKUs is a common shop log).

    Integer ids on both sides: ``REQUESTS`` (integers only: the text ``"7"`` is a 400). A side
    of ``STR_IDS``: the same models with its ``user_id`` or ``item_id(s)`` as non-empty strings
    (the number 7 is a 400: the ids are the training data's text, so a client never guesses a
    conversion). The given ids (known to the served data) are the OpenAPI examples."""
    if user_kind == item_kind == INT_IDS:
        return REQUESTS
    user = EXAMPLE_USER if example_user is None else example_user
    items = list(example_items) or list(EXAMPLE_ITEMS)

    def raw_id(what: str, kind: str, example: int | str) -> Any:
        if kind == INT_IDS:
            bounds: dict[str, Any] = {"ge": 0, "le": MAX_ID}
            description = f"raw {what} id"
        else:
            bounds = {"min_length": 1, "max_length": MAX_ID_LENGTH}
            description = f"raw {what} id, as in the training data"
        field = Field(description=description, json_schema_extra={"example": example}, **bounds)
        return Annotated[int if kind == INT_IDS else str, field]

    user_id, item_id = raw_id("user", user_kind, user), raw_id("item", item_kind, items[0])
    item_ids = Annotated[list[item_id], Field(min_length=1, max_length=MAX_ITEMS)]  # type: ignore[valid-type]

    class StrRecommendRequest(RecommendRequest):
        model_config = _strict({"user_id": user, "k": 10, "exclude_seen": True})
        user_id: user_id  # type: ignore[valid-type]

    class StrRecentItemsRequest(RecentItemsRequest):
        model_config = _strict({"item_ids": items[:2], "k": 10})
        item_ids: item_ids  # type: ignore[valid-type]

    class StrSimilarItemsRequest(SimilarItemsRequest):
        model_config = _strict({"item_id": items[0], "k": 10})
        item_id: item_id  # type: ignore[valid-type]

    class StrScoreRequest(ScoreRequest):
        model_config = _strict({"user_id": user, "item_ids": items[:2]})
        user_id: user_id  # type: ignore[valid-type]
        item_ids: item_ids  # type: ignore[valid-type]

    class StrExplainRequest(StrRecommendRequest):
        model_config = _strict({"user_id": user, "k": 3, "exclude_seen": True})

    models: list[type[BaseModel]] = [
        StrRecommendRequest,
        StrRecentItemsRequest,
        StrSimilarItemsRequest,
        StrScoreRequest,
        StrExplainRequest,
    ]
    for model, base in zip(models, REQUESTS.values(), strict=True):
        model.__name__ = model.__qualname__ = base.__name__  # the OpenAPI schema's names
    return dict(zip(REQUESTS, models, strict=True))


ScoreKind = Literal["model", "popularity_share", "similarity"]


class ScoredItem(BaseModel):
    item_id: int | str = Field(description="raw item id: an integer, or text for string ids")
    score: float


class Answer(BaseModel):
    """Provenance carried by every answer."""

    model_tag: str = Field(description="the gated two-stage model (champion) in the BentoML store")
    retriever_tag: str = Field(description="its retrieval part: <model_tag>/<family>")
    data_version: str = Field(description="DVC hash of the processed data it was trained on")
    params_hash: str = Field(description="hash of the settings it was trained with")
    gate_decision: str = Field(description="the recorded gate decision that promoted it")
    index_type: str = Field(description="exact, hnsw or ivf")
    fallback: str | None = Field(
        None, description="null, 'popularity' (unknown user) or 'recent_items' (anonymous)"
    )
    score_kind: ScoreKind = Field(
        description="what the scores are: 'model' (the champion's scores: they order the "
        "items of one answer, their scale is the model's own), 'popularity_share' (the item's "
        "share of all training interactions, in [0, 1]: the popularity fallback of an unknown "
        "user) or 'similarity' (inner product of two-tower item vectors: /similar_items, "
        "/recommend_recent)"
    )


class RecommendResponse(Answer):
    user_id: int | str | None = None
    items: list[ScoredItem]


class ScoreResponse(Answer):
    user_id: int | str
    items: list[ScoredItem]


class HistoryItem(BaseModel):
    item_id: int | str
    similarity: float


class GenreWeight(BaseModel):
    genre: str
    history_share: float


class ExplainedItem(ScoredItem):
    history: list[HistoryItem]
    genres: list[GenreWeight]


class ExplainResponse(Answer):
    user_id: int | str
    items: list[ExplainedItem]


class ErrorResponse(BaseModel):
    """Every error answer: a JSON object with ``error``; the other fields as the status has them."""

    error: str = Field(description="what is wrong")
    field: str | None = Field(
        None, description="the request field at fault (413: 'body'; 422: 'item_ids', 'genres'...)"
    )
    unknown_ids: list[int | str] | None = Field(None, description="422: the unknown ids or genres")
    detail: list[dict[str, Any]] | None = Field(
        None, description="400: pydantic's errors; detail[].loc names the field"
    )
    budget_s: float | None = Field(None, description="503: the latency budget, in seconds")
    model_tag: str | None = Field(
        None,
        description="the champion serving this bento, as in every answer (absent from the 429 "
        "and 504 answers, which BentoML gives before a request reaches the service)",
    )


ERROR_STATUSES: Final = {
    400: "Malformed body: invalid JSON, a wrong type, a missing or unknown field, a value out "
    "of range (k in [1, 1000], at most 1000 ids); `detail[].loc` names the field",
    413: "Body over the bento's `max_body_bytes` (64 KiB by default); `field`: 'body'",
    422: "Unknown item ids or genres: `field` and `unknown_ids` name them (unknown user ids "
    "are not errors: they get the popularity fallback)",
    429: "Back-pressure: `max_concurrency` requests already in flight (BentoML's answer); "
    "retry with backoff",
    500: "Unexpected error: a bug, whose traceback is in the server log",
    503: "Back-pressure: the answer had not started within `serving.latency_budget_s` "
    "(`Retry-After: 1`); retry with backoff",
    504: "Not answered within BentoML's `traffic.timeout` (10 s)",
}
"""Every error status a data-plane route answers, as documented in the OpenAPI schema."""


def document_errors(spec: dict[str, Any], routes: Iterable[str]) -> dict[str, Any]:
    """``spec`` (BentoML's OpenAPI schema, parsed) with the ``POST`` operation of each of
    ``routes`` listing the error answers of ``ERROR_STATUSES`` instead of BentoML's generic
    400/404/500 (no data-plane route answers 404), each with the ``ErrorResponse`` schema."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas[ErrorResponse.__name__] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    ref = {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}
    for route in routes:
        operation = spec.get("paths", {}).get(route, {}).get("post")
        if operation is None:
            continue
        responses = operation.setdefault("responses", {})
        ok = responses.get("200", responses.get(200))
        responses.clear()
        if ok is not None:
            responses["200"] = ok
        for status, description in ERROR_STATUSES.items():
            responses[str(status)] = {
                "description": description,
                "content": {"application/json": {"schema": ref}},
            }
    return spec
