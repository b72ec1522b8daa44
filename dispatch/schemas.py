"""API shapes of dispatch. Field names are the public contract (`model`, `symptom`, …); the
services take the same values under their own names."""

from datetime import datetime

from ninja import Field, Schema

from core.pagination import PageOut
from dispatch.models import CardStatus, ProblemCard


class CustomerSchema(Schema):
    name: str = Field(description="Who reported the fault.")
    phone: str = ""
    line_user_id: str = Field("", description="LINE user id, when the report came through LINE.")
    address: str = ""
    service_area: str = Field("", description="e.g. Taipei Da'an; matching filters on it.")


class ProblemCardIn(Schema):
    brand: str
    model: str = Field("", description="The lock model, e.g. KG-200.")
    symptom: str = Field(description="wont_lock, wont_unlock, error_code, battery, keypad, app, "
                         "noise, damage or other.")  # fmt: skip
    error_code: str = Field("", description="As shown on the lock; E21, e-21, E 21 → E-21.")
    description: str
    customer: CustomerSchema
    diagnose: bool = Field(False, description="Run the three-layer diagnosis right away.")


class ProblemCardPatchIn(Schema):
    version: int | None = Field(None, description="The version you read; a stale one is a 409.")
    brand: str | None = None
    model: str | None = None
    symptom: str | None = None
    error_code: str | None = None
    description: str | None = None
    address: str | None = None
    service_area: str | None = None


class ResolveIn(Schema):
    resolution: str = Field(description="What fixed it (required).")
    root_cause: str = ""
    parts_used: str = ""
    technician_id: int | None = None
    version: int | None = None


class ProblemCardOut(Schema):
    id: int
    status: CardStatus
    version: int
    brand: str
    model: str
    symptom: str
    error_code: str
    description: str
    customer: CustomerSchema
    diagnosis: dict = Field(description="The last diagnosis: layer, reason, cases, passages…")
    resolution: str
    root_cause: str
    parts_used: str
    resolved_at: datetime | None
    is_searchable_by_meaning: bool = Field(
        description="False until the card's vector is in the active embedding space."
    )
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_model(card: ProblemCard) -> str:
        return card.lock_model

    @staticmethod
    def resolve_customer(card: ProblemCard) -> dict:
        return {
            "name": card.customer_name,
            "phone": card.customer_phone,
            "line_user_id": card.customer_line_user_id,
            "address": card.address,
            "service_area": card.service_area,
        }

    @staticmethod
    def resolve_is_searchable_by_meaning(card: ProblemCard) -> bool:
        return card.has_vector  # annotated by dispatch.queries.problem_cards()


class ProblemCardPage(PageOut):
    items: list[ProblemCardOut]


class CaseMatchOut(Schema):
    card_id: int
    brand: str
    lock_model: str
    symptom: str
    error_code: str
    description: str
    resolution: str
    technician_name: str | None
    similarity: float | None
    same_brand: bool
    same_model: bool
    same_code: bool


class DiagnosisOut(Schema):
    layer: int = Field(description="1 similar case, 2 manuals, 3 escalated.")
    reason: str
    embedding_model: str
    threshold: float | None
    best_similarity: float | None
    cases: list[CaseMatchOut]
    passages: list[dict]
    answer: str
    answer_id: int | None
    technicians: list[dict]
    searched: dict
