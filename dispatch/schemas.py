"""API shapes of dispatch. Field names are the public contract (`model`, `symptom`, …); the
services take the same values under their own names."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.urls import reverse
from ninja import Field, Schema
from pydantic import StrictBool

from core.pagination import BIGINT_MAX, PageOut
from core.schemas import JsonDate, JsonDateTime, JsonFloat, JsonInt
from dispatch.billing import order_totals
from dispatch.models import (
    CardStatus,
    Invoice,
    OrderEvent,
    OrderLine,
    OrderStatus,
    ProblemCard,
    ProblemCardPhoto,
    ServiceOrder,
    Settlement,
    Symptom,
    Technician,
)
from dispatch.services import FIELD_LIMITS
from knowledge.models import KnowledgeSource

# A required text must hold something besides white space (dispatch.services.REQUIRED).
NOT_BLANK = r"\S"


def text_field(
    field: str, default: str | None = "", *, required: bool = False, **extra: Any
) -> Any:
    """A card's text field with its limit from dispatch.services.FIELD_LIMITS, stated in the
    schema; the services enforce it with their code (DISPATCH_INVALID_CARD)."""
    rule: dict[str, Any] = {"maxLength": FIELD_LIMITS[field]}
    if required:
        rule["pattern"] = NOT_BLANK
    return Field(... if required and default == "" else default, json_schema_extra=rule, **extra)


class CustomerSchema(Schema):
    name: str = text_field("customer_name", required=True, description="Who reported the fault.")
    phone: str = text_field("customer_phone")
    line_user_id: str = text_field(
        "customer_line_user_id", description="LINE user id, when the report came through LINE."
    )
    address: str = text_field("address")
    service_area: str = text_field(
        "service_area", description="e.g. Taipei Da'an; matching filters on it."
    )


class ProblemCardIn(Schema):
    brand: str = text_field("brand", required=True)
    model: str = text_field("lock_model", description="The lock model, e.g. KG-200.")
    symptom: str = Field(json_schema_extra={"enum": list(Symptom.values)})
    error_code: str = text_field(
        "error_code", description="As shown on the lock; E21, e-21, E 21 → E-21."
    )
    description: str = text_field("description", required=True)
    customer: CustomerSchema
    diagnose: StrictBool = Field(False, description="Run the three-layer diagnosis right away.")


class ProblemCardPatchIn(Schema):
    version: JsonInt | None = Field(
        None,
        ge=1,
        le=BIGINT_MAX,
        description="The version you read; a stale one is a 409.",
    )
    brand: str = text_field("brand", None, required=True)  # null is not a brand
    model: str | None = text_field("lock_model", None)
    symptom: str = Field(None, json_schema_extra={"enum": list(Symptom.values)})
    error_code: str | None = text_field("error_code", None)
    description: str = text_field("description", None, required=True)
    address: str | None = text_field("address", None)
    service_area: str | None = text_field("service_area", None)


class ResolveIn(Schema):
    resolution: str = text_field(
        "resolution", required=True, description="What fixed it (required)."
    )
    root_cause: str = text_field("root_cause")
    parts_used: str = text_field("parts_used")
    technician_id: JsonInt | None = Field(None, ge=1, le=BIGINT_MAX)
    version: JsonInt | None = Field(None, ge=1, le=BIGINT_MAX)


class ProblemCardPhotoOut(Schema):
    id: int
    url: str = Field(description="Where a logged-in user of the pages sees the photo (not public).")
    content_type: str = Field(description="Decided from the file's bytes.")
    size: int = Field(description="Bytes.")
    uploaded_at: datetime

    @staticmethod
    def resolve_url(photo: ProblemCardPhoto) -> str:
        return reverse("dispatch:photo", args=[photo.pk])


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
    feedback_boost: float = Field(
        description="As a case: its outcome signals not reverted, summed and bounded."
    )
    is_searchable_by_meaning: bool = Field(
        description="False until the card's vector is in the active embedding space."
    )
    created_at: datetime
    updated_at: datetime
    photos: list[ProblemCardPhotoOut]

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
    feedback_boost: float = Field(
        0.0, description="The case's outcome boost (ranks, never filters)."
    )


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


# --- Technicians ------------------------------------------------------------------------------
# Money and ratings are `Decimal`: JSON carries them as strings ("600.00"), never as floats.
# A decimal string, stated in the schema (a JSON Schema `pattern` applies to strings only).
DECIMAL_TEXT = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"


class SkillIn(Schema):
    brand: str = Field(description="As people write it; stored as its key (KG-200 → kg200).")
    symptom: str = Field("", description="Blank: every symptom of the brand.")
    level: JsonInt = Field(ge=0, le=5)


class SkillOut(Schema):
    brand_key: str
    symptom: str
    level: int


# dispatch.technicians' rules stated in the schema (it enforces them with
# DISPATCH_INVALID_TECHNICIAN): a name, places on the globe.
TECHNICIAN_NAME = {"pattern": NOT_BLANK, "maxLength": 200}
LATITUDE = {"minimum": -90, "maximum": 90}
LONGITUDE = {"minimum": -180, "maximum": 180}


class TechnicianIn(Schema):
    name: str = Field(json_schema_extra=TECHNICIAN_NAME)
    phone: str = ""
    service_areas: list[str] = Field(default_factory=list, description="e.g. Taipei Da'an.")
    latitude: JsonFloat | None = Field(None, json_schema_extra=LATITUDE)
    longitude: JsonFloat | None = Field(None, json_schema_extra=LONGITUDE)
    rating: Decimal = Field(
        Decimal("4.00"),
        description="0–5.",
        json_schema_extra={"pattern": DECIMAL_TEXT, "minimum": 0, "maximum": 5},
    )
    daily_capacity: JsonInt = Field(4, description="Orders a day, 1–50.")
    is_active: StrictBool = True
    skills: list[SkillIn] = Field(default_factory=list)


class TechnicianPatchIn(Schema):
    name: str = Field(None, json_schema_extra=TECHNICIAN_NAME)  # null is not a name
    phone: str | None = None
    service_areas: list[str] | None = None
    latitude: JsonFloat | None = Field(None, json_schema_extra=LATITUDE)
    longitude: JsonFloat | None = Field(None, json_schema_extra=LONGITUDE)
    rating: Decimal | None = Field(
        None, json_schema_extra={"pattern": DECIMAL_TEXT, "minimum": 0, "maximum": 5}
    )
    daily_capacity: JsonInt | None = None
    is_active: StrictBool | None = None
    skills: list[SkillIn] | None = Field(None, description="Replaces every skill when given.")


class TechnicianOut(Schema):
    id: int
    name: str
    phone: str
    service_areas: list[str]
    latitude: float | None
    longitude: float | None
    rating: Decimal
    daily_capacity: int
    is_active: bool
    skills: list[SkillOut]
    created_at: datetime

    @staticmethod
    def resolve_skills(technician: Technician) -> list:
        return list(technician.skills.all())


class TechnicianPage(PageOut):
    items: list[TechnicianOut]


class TechnicianRefOut(Schema):
    id: int
    name: str


class CandidateOut(Schema):
    technician_id: int
    name: str
    score: float = Field(description="0–1: skill, free slots, rating (and nearness).")
    skill: int
    load: int = Field(description="Orders of the technician that day.")
    capacity: int
    rating: float
    distance_km: float | None = Field(description="When the order and technician have places.")
    reasons: list[str]


# --- Service orders ------------------------------------------------------------------------------


class ServiceOrderIn(Schema):
    problem_card_id: JsonInt
    address: str = Field("", description="Blank: the card's address.")
    scheduled_start: JsonDateTime | None = None
    scheduled_end: JsonDateTime | None = None
    latitude: JsonFloat | None = Field(
        None, description="Where the visit is; matching adds distance."
    )
    longitude: JsonFloat | None = None


class AssignIn(Schema):
    technician_id: JsonInt
    version: JsonInt = Field(description="The version you read; a stale one is a 409.")
    eta: JsonDateTime | None = None
    note: str = ""


class TransitionIn(Schema):
    to: OrderStatus
    version: JsonInt = Field(description="The version you read; a stale one is a 409.")
    note: str = Field("", description="Required to cancel: why.")
    technician_id: JsonInt | None = Field(None, description="Required to become assigned.")
    eta: JsonDateTime | None = Field(None, description="Required to become en_route (unless set).")
    work_done: str = Field("", description="Required to complete; becomes the card's resolution.")
    parts_used: str = Field("", description='Required to complete ("none" when none were).')
    diagnosis_matched: StrictBool | None = Field(
        None,
        description="On completing: did the fix match the card's diagnosis? true raises the cases "
        "or passages it cited, false lowers them (a wrong diagnosis); leave out when unknown.",
    )


class ServiceOrderOut(Schema):
    id: int
    status: OrderStatus
    version: int
    problem_card_id: int
    technician: TechnicianRefOut | None
    address: str
    latitude: float | None
    longitude: float | None
    scheduled_start: datetime | None
    scheduled_end: datetime | None
    eta: datetime | None
    work_done: str
    parts_used: str
    diagnosis_matched: bool | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_problem_card_id(order: ServiceOrder) -> int:
        return order.card_id


class ServiceOrderPage(PageOut):
    items: list[ServiceOrderOut]


class OrderLineIn(Schema):
    item_code: str = Field(
        description="A quote item's code (GET /quote-items).",
        json_schema_extra={"pattern": NOT_BLANK, "maxLength": 40},
    )
    quantity: Decimal = Field(
        Decimal("1"),
        description="Above 0, at most two decimals.",
        json_schema_extra={"pattern": DECIMAL_TEXT},
    )


class OrderLineOut(Schema):
    id: int
    item_code: str
    description: str
    quantity: Decimal
    unit_price: Decimal = Field(description="The item's price when the line was added.")
    amount: Decimal = Field(description="quantity × unit_price, half-up to the cent.")
    created_at: datetime

    @staticmethod
    def resolve_item_code(line: OrderLine) -> str:
        return line.item.code


class TotalsOut(Schema):
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal = Field(description="subtotal × tax_rate, half-up to the cent.")
    total: Decimal = Field(description="subtotal + tax.")


class OrderEventOut(Schema):
    from_status: str
    to_status: str
    actor: str = Field(description="The user, or api:<key name>.")
    note: str
    created_at: datetime

    @staticmethod
    def resolve_actor(event: OrderEvent) -> str:
        return event.actor_label


class SettleIn(Schema):
    share_percent: Decimal | None = Field(
        None,
        description="Share of the subtotal, 0–100.",
        json_schema_extra={"pattern": DECIMAL_TEXT, "minimum": 0, "maximum": 100},
    )
    fee: Decimal | None = Field(
        None, description="A fixed fee instead.", json_schema_extra={"pattern": DECIMAL_TEXT}
    )


class SettlementOut(Schema):
    technician_id: int
    basis: str
    share_percent: Decimal | None
    amount: Decimal
    settled_by: str
    settled_at: datetime


class InvoiceIn(Schema):
    # dispatch.billing._buyer's rule (DISPATCH_INVALID_INVOICE), stated for clients.
    buyer_name: str = Field(json_schema_extra={"pattern": NOT_BLANK, "maxLength": 200})
    buyer_tax_id: str = Field("", description="統一編號: 8 digits, checksum-verified.")
    issued_on: JsonDate | None = Field(None, description="Default: today.")


class InvoiceOut(Schema):
    number: str = Field(description="INV-<year>-<n>, n from a database sequence.")
    issued_on: date
    buyer_name: str
    buyer_tax_id: str
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    issued_by: str
    created_at: datetime


class ServiceOrderDetailOut(ServiceOrderOut):
    lines: list[OrderLineOut]
    totals: TotalsOut
    events: list[OrderEventOut]
    settlement: SettlementOut | None
    invoice: InvoiceOut | None

    @staticmethod
    def resolve_lines(order: ServiceOrder) -> list:
        return list(order.lines.all())

    @staticmethod
    def resolve_totals(order: ServiceOrder) -> dict:
        return vars(order_totals(order=order))

    @staticmethod
    def resolve_events(order: ServiceOrder) -> list:
        return list(order.events.all())

    @staticmethod
    def resolve_settlement(order: ServiceOrder) -> Settlement | None:
        return getattr(order, "settlement", None)

    @staticmethod
    def resolve_invoice(order: ServiceOrder) -> Invoice | None:
        return getattr(order, "invoice", None)


class QuoteItemOut(Schema):
    id: int
    code: str
    name: str
    unit_price: Decimal
    is_active: bool


class SopDraftOut(Schema):
    id: int = Field(description="The new `sop` source (knowledge API: /api/v1/sources/{id}).")
    title: str
    uri: str
    enabled: bool = Field(description="False: a curator reviews the draft, then enables it.")
    mode: str = Field(description="online (the chat model wrote it) or offline (extractive).")
    card_ids: list[int] = Field(description="The cards it was drafted from, this one first.")
    fallback: str = Field("", description="Why an online draft is extractive after all.")

    @staticmethod
    def resolve_mode(source: KnowledgeSource) -> str:
        return source.metadata.get("mode", "")

    @staticmethod
    def resolve_card_ids(source: KnowledgeSource) -> list[int]:
        return source.metadata.get("from_cards", [])

    @staticmethod
    def resolve_fallback(source: KnowledgeSource) -> str:
        return source.metadata.get("fallback", "")
