"""The guided fault report on LINE: brand → model → symptom → error code → description → photos,
one question at a time, each with quick replies, in the customer's language (texts.py).

The problem card is filed as soon as the description is given (so an intake left half-way still
leaves a card on the dispatch board); photos are added to it as they arrive; "Done" (or "No
photo") runs the three-layer diagnosis and the customer gets the similar case's fix (layer 1), the
manuals' answer with its sources (layer 2), or word that a technician will contact them (layer 3).

Every function here runs inside the caller's transaction with the intake row locked
(`intake_current(lock=True)`), except `intake_finish`, which calls the provider and the ask and so
runs outside any lock."""

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core.errors import ApiError
from dispatch.diagnosis import problem_card_diagnose
from dispatch.models import CardStatus, ProblemCard, Symptom
from dispatch.photos import problem_card_photo_add
from dispatch.queries import brands_reported
from dispatch.services import CustomerIn, card_field_clean, problem_card_create
from knowledge.answer.answering import answer_feedback
from knowledge.models import Answer
from line_channel.messaging import (
    LineApiError,
    line_message_content,
    line_profile_name,
    quick_reply_camera,
    quick_reply_camera_roll,
    quick_reply_postback,
    quick_reply_text,
    text_message,
)
from line_channel.models import IntakeStatus, IntakeStep, LineIntake
from line_channel.texts import START_WORDS, SYMPTOM_LABELS, answer_reply_text, fold, say, words

BRAND_CHOICES = 10  # brands offered as buttons; any other is typed
# Where a LINE user's photo goes outside an intake: their latest card still being worked on.
CARD_OPEN_FOR_PHOTOS = (CardStatus.OPEN, CardStatus.DIAGNOSED, CardStatus.DISPATCHED)


@dataclass
class IntakeReply:
    messages: list[dict] = field(default_factory=list)
    finish: bool = False  # the caller runs `intake_finish` once its transaction is committed


def start_language(text: str) -> str | None:
    """The intake's language when `text` is a start word ("repair", "報修", "修理"), else None."""
    return START_WORDS.get(fold(text))


def intake_current(*, user_id: str, lock: bool = False) -> LineIntake | None:
    """The user's intake in progress. One left unanswered longer than
    KIOKU_LINE_INTAKE_IDLE_MINUTES has expired: the next message is a question again (a card it
    filed stays on the board). One whose card staff deleted meanwhile is over too."""
    intakes = LineIntake.objects.filter(user_id=user_id, status=IntakeStatus.ACTIVE)
    intake = (intakes.select_for_update() if lock else intakes).first()
    if intake is None:
        return None
    idle = timedelta(minutes=settings.KIOKU_LINE_INTAKE_IDLE_MINUTES)
    if intake.updated_at < timezone.now() - idle:
        _close(intake, IntakeStatus.EXPIRED)
        return None
    if intake.step == IntakeStep.PHOTO and intake.card_id is None:  # staff deleted the card
        _close(intake, IntakeStatus.CANCELLED)
        return None
    return intake


def intake_start(*, user_id: str, language: str) -> IntakeReply:
    """Start over: an intake in progress is cancelled, a new one asks for the brand."""
    current = intake_current(user_id=user_id, lock=True)
    if current is not None:
        _close(current, IntakeStatus.CANCELLED)
    intake = LineIntake.objects.create(user_id=user_id, language=language)
    return IntakeReply([_question(intake)])


def intake_text(*, intake: LineIntake, text: str) -> IntakeReply:
    """The customer's answer to the current question (typed, or a tapped quick reply)."""
    language = intake.language
    answer = fold(text)
    if answer in words("button_cancel"):
        _close(intake, IntakeStatus.CANCELLED)
        return IntakeReply([text_message(say("cancelled", language))])
    skipped = answer in words("button_skip", "button_no_code")
    try:
        if intake.step == IntakeStep.BRAND:
            intake.brand = card_field_clean("brand", text)
            if not intake.brand:
                return IntakeReply([_question(intake)])
            intake.step = IntakeStep.MODEL
        elif intake.step == IntakeStep.MODEL:
            intake.lock_model = "" if skipped else card_field_clean("lock_model", text)
            intake.step = IntakeStep.SYMPTOM
        elif intake.step == IntakeStep.SYMPTOM:
            symptom = symptom_from_text(text)
            if symptom is None:
                return IntakeReply([_question(intake, say("symptom_unknown", language))])
            intake.symptom = symptom
            intake.step = IntakeStep.ERROR_CODE
        elif intake.step == IntakeStep.ERROR_CODE:
            intake.error_code = "" if skipped else card_field_clean("error_code", text)
            intake.step = IntakeStep.DESCRIPTION
        elif intake.step == IntakeStep.DESCRIPTION:
            description = card_field_clean("description", text)
            if not description:
                return IntakeReply([_question(intake)])
            intake.card = _card_file(intake, description)
            intake.step = IntakeStep.PHOTO
        elif intake.step == IntakeStep.PHOTO:
            if answer in words("button_done", "button_no_photo", "button_skip"):
                intake.step = IntakeStep.DONE
                intake.save()
                return IntakeReply(finish=True)
            return IntakeReply([_question(intake, say("photo_expected", language))])
    except ApiError as exc:  # too long, or not text the card can hold
        reason = say("invalid", language, reason=exc.message)
        return IntakeReply([_question(intake, reason)])
    intake.save()
    return IntakeReply([_question(intake)])


def intake_photo(*, intake: LineIntake, message_id: str) -> IntakeReply:
    """An image sent during the intake: added to the card at the photo step; before the card
    exists the customer is asked to send it again once it does (it is not silently dropped)."""
    if intake.card_id is None:
        return IntakeReply([_question(intake, say("photo_too_early", intake.language))])
    problem = _photo_add(card_id=intake.card_id, message_id=message_id)
    if problem:
        return IntakeReply(
            [_question(intake, say("photo_refused", intake.language, reason=problem))]
        )
    intake.save()  # the customer is still here: the intake does not expire meanwhile
    count = intake.card.photos.count()
    return IntakeReply([_question(intake, say("photo_added", intake.language, count=count))])


def line_photo_attach(*, user_id: str, message_id: str, language: str) -> list[dict]:
    """An image sent outside an intake goes to the user's latest card still being worked on;
    without one the user is told how to start a report."""
    card = (
        ProblemCard.objects.filter(customer_line_user_id=user_id, status__in=CARD_OPEN_FOR_PHOTOS)
        .order_by("-created_at")
        .first()
    )
    if card is None:
        return [
            text_message(
                say("photo_without_card", language), quick_replies=[report_button(language)]
            )
        ]
    problem = _photo_add(card_id=card.pk, message_id=message_id)
    if problem:
        return [text_message(say("photo_refused", language, reason=problem))]
    return [text_message(say("photo_added_to_card", language, card=card.pk))]


def intake_finish(*, intake_id: int) -> list[dict]:
    """Diagnose the intake's card (outside any lock: it may call the embedding provider and the
    ask) and tell the customer the outcome."""
    intake = LineIntake.objects.select_related("card").get(pk=intake_id)
    language = intake.language
    diagnosis = problem_card_diagnose(card_id=intake.card_id)
    intake.diagnosis_layer = diagnosis.layer
    intake.status = IntakeStatus.COMPLETED
    intake.finished_at = timezone.now()
    intake.save(update_fields=["diagnosis_layer", "status", "finished_at", "updated_at"])
    card = intake.card
    if diagnosis.layer == 3:
        return [text_message(say("layer_technician", language, card=card.pk))]
    if diagnosis.layer == 1:
        text = say("layer_case", language, resolution=diagnosis.cases[0].resolution)
    else:
        answer = Answer.objects.get(pk=diagnosis.answer_id)
        text = say("layer_manual", language, answer=answer_reply_text(answer, language=language))
    buttons = answer_buttons(
        language,
        yes="button_solved",
        no="button_still_broken",
        data=f"action=solved&card={card.pk}&solved",
    )
    return [text_message(text, quick_replies=buttons)]


def intake_escalate(*, intake_id: int) -> list[dict]:
    """The diagnosis could not run: the report is complete, its card stays open for a
    technician, and the customer is told so."""
    intake = LineIntake.objects.get(pk=intake_id)
    intake.status = IntakeStatus.COMPLETED
    intake.finished_at = timezone.now()
    intake.save(update_fields=["status", "finished_at", "updated_at"])
    return [text_message(say("layer_technician", intake.language, card=intake.card_id))]


def intake_outcome(*, user_id: str, card_id: int, solved: bool) -> list[dict]:
    """The customer's word on a diagnosis: kept on the intake (shown beside the card); a layer-2
    answer gets it as answer feedback; still broken means a technician will call."""
    intake = (
        LineIntake.objects.select_for_update()
        .filter(user_id=user_id, card_id=card_id, status=IntakeStatus.COMPLETED)
        .first()
    )
    if intake is None:  # not this user's card, or no diagnosis was sent for it
        return []
    intake.customer_solved = solved
    intake.save(update_fields=["customer_solved", "updated_at"])
    answer_id = (intake.card.diagnosis or {}).get("answer_id")
    if intake.diagnosis_layer == 2 and answer_id:
        answer = Answer.objects.filter(pk=answer_id).first()
        if answer is not None:
            answer_feedback(answer=answer, is_helpful=solved, by=f"line:{user_id}")
    key = "solved" if solved else "still_broken"
    return [text_message(say(key, intake.language, card=card_id))]


def answer_buttons(language: str, *, yes: str, no: str, data: str) -> list[dict]:
    """Two quick replies that say yes or no about a message (helpful / not helpful, solved /
    still broken): postbacks `<data>=1` and `<data>=0`, labelled in `language`, shown in the
    chat as the user's words."""
    return [
        quick_reply_postback(say(key, language), f"{data}={value}", display_text=say(key, language))
        for key, value in ((yes, 1), (no, 0))
    ]


def symptom_from_text(text: str) -> str | None:
    """The symptom a tapped label (in any language) or its code names."""
    answer = fold(text)
    for symptom, labels in SYMPTOM_LABELS.items():
        if answer == fold(symptom) or answer in {fold(label) for label in labels.values()}:
            return str(symptom)
    return None


def report_button(language: str) -> dict:
    """The quick reply that starts a report, shown under answers and where a report is needed."""
    return quick_reply_text(say("button_report", language), say("report_word", language))


def _close(intake: LineIntake, status: str) -> None:
    intake.status = status
    intake.finished_at = timezone.now()
    intake.save(update_fields=["status", "finished_at", "updated_at"])


def _card_file(intake: LineIntake, description: str) -> ProblemCard:
    name = line_profile_name(user_id=intake.user_id) or f"LINE user …{intake.user_id[-6:]}"
    return problem_card_create(
        customer=CustomerIn(name=name[:200], line_user_id=intake.user_id),
        brand=intake.brand,
        lock_model=intake.lock_model,
        symptom=intake.symptom or Symptom.OTHER,
        error_code=intake.error_code,
        description=description,
    )


def _photo_add(*, card_id: int, message_id: str) -> str:
    """Fetch the image from LINE and add it to the card; the reason in words when it fails."""
    try:
        data = line_message_content(message_id=message_id)
        problem_card_photo_add(card_id=card_id, data=data, filename=f"line-{message_id}")
    except LineApiError as exc:
        return str(exc)
    except ApiError as exc:
        return exc.message
    return ""


def _question(intake: LineIntake, lead: str = "") -> dict:
    """The current step's question (after `lead`, e.g. why the last answer was not taken), with
    its quick replies and a Cancel button."""
    language = intake.language
    step = intake.step
    buttons: list[dict] = []
    if step == IntakeStep.BRAND:
        text = say("ask_brand", language)
        buttons = [quick_reply_text(b, b) for b in brands_reported(limit=BRAND_CHOICES)]
    elif step == IntakeStep.MODEL:
        text = say("ask_model", language)
        buttons = [_button("button_skip", language)]
    elif step == IntakeStep.SYMPTOM:
        text = say("ask_symptom", language)
        buttons = [
            quick_reply_text(labels[language], labels[language])
            for labels in SYMPTOM_LABELS.values()
        ]
    elif step == IntakeStep.ERROR_CODE:
        text = say("ask_error_code", language)
        buttons = [_button("button_no_code", language)]
    elif step == IntakeStep.DESCRIPTION:
        text = say("ask_description", language)
    else:
        text = say("ask_photo", language, card=intake.card_id)
        buttons = [
            quick_reply_camera(say("button_camera", language)),
            quick_reply_camera_roll(say("button_camera_roll", language)),
            _button("button_done" if intake.card.photos.exists() else "button_no_photo", language),
        ]
        if lead:  # after a photo the lead says all that is needed
            text = lead
            lead = ""
    buttons.append(_button("button_cancel", language))
    return text_message(f"{lead}\n\n{text}" if lead else text, quick_replies=buttons)


def _button(key: str, language: str) -> dict:
    label = say(key, language)
    return quick_reply_text(label, label)
