"""Typed request and response bodies of the service (pydantic; published in its OpenAPI schema).

Requests are strict (no string-to-int coercion, no booleans as numbers) and closed (an unknown
field is an error naming it), so every malformed request gets a 400 that names the field.
Sizes are bounded: k in [1, 1000], at most ``MAX_ITEMS`` ids and ``MAX_GENRES`` genres.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

MAX_K: Final = 1000
MAX_ITEMS: Final = 1000
MAX_GENRES: Final = 32
MAX_ID: Final = 2**63 - 1
EXAMPLE_USER: Final = 1
EXAMPLE_ITEM: Final = 1

UserId = Annotated[int, Field(ge=0, le=MAX_ID, description="raw user id", examples=[1])]
ItemId = Annotated[int, Field(ge=0, le=MAX_ID, description="raw item id", examples=[1])]
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


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class RecommendRequest(Request):
    user_id: UserId
    k: K = 10
    exclude_seen: bool = Field(True, description="drop the user's training items")
    genres: Genres = None


class RecentItemsRequest(Request):
    """An anonymous or new user, described by the items they just interacted with."""

    item_ids: ItemIds
    k: K = 10
    genres: Genres = None


class SimilarItemsRequest(Request):
    item_id: ItemId
    k: K = 10


class ScoreRequest(Request):
    user_id: UserId
    item_ids: ItemIds


class ExplainRequest(RecommendRequest):
    pass


class ScoredItem(BaseModel):
    item_id: int
    score: float


class Answer(BaseModel):
    """Provenance carried by every answer."""

    model_tag: str = Field(description="the ranking model (champion) in the BentoML store")
    retriever_tag: str = Field(description="the two-tower retrieval model")
    data_version: str
    index_type: str = Field(description="exact, hnsw or ivf")
    fallback: str | None = Field(
        None, description="null, 'popularity' (unknown user) or 'recent_items' (anonymous)"
    )


class RecommendResponse(Answer):
    user_id: int | None = None
    items: list[ScoredItem]


class ScoreResponse(Answer):
    user_id: int
    items: list[ScoredItem]


class HistoryItem(BaseModel):
    item_id: int
    similarity: float


class GenreWeight(BaseModel):
    genre: str
    history_share: float


class ExplainedItem(ScoredItem):
    history: list[HistoryItem]
    genres: list[GenreWeight]


class ExplainResponse(Answer):
    user_id: int
    items: list[ExplainedItem]


class ErrorResponse(BaseModel):
    error: str
    field: str
    unknown_ids: list[int | str] = []
