"""The guided fault report on LINE, end to end through the signed webhook and the Messaging API
stub: one report per language, ending in each diagnosis layer, with photos, the customer's word on
the diagnosis, and the conversation kept for staff."""

import pytest

from dispatch.models import CardStatus, ProblemCard
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import Answer
from line_channel.models import IntakeStatus, LineIntake, LineReply
from sessions_app.models import Message as ChatMessage
from tests.dispatch.factories import make_case, make_fingerprint_manual
from tests.dispatch.test_diagnosis import MOTOR_CABLE
from tests.line_channel.conftest import Chat, buttons, postback_data

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def offline(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()


def no_case_is_close_enough(settings) -> None:
    settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE = {
        **settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE,
        "local-hash-v1": 0.99,
    }


@pytest.fixture
def chat(client, line_stub):
    line_stub.profiles["U1234567890abcdef"] = "Chen Mei"
    return Chat(client, line_stub)


def test_an_english_report_is_answered_from_the_manuals_and_still_broken_calls_a_technician(
    chat, offline, settings
):
    make_fingerprint_manual()
    embedding_run()
    no_case_is_close_enough(settings)

    [brand] = chat.say("repair")
    assert brand["text"].startswith("Let's report the fault. Which brand")
    assert buttons(brand) == ["Cancel"]  # no brand reported yet: typed
    [model] = chat.say("Kagiya")
    assert "Which model" in model["text"] and buttons(model) == ["Skip", "Cancel"]
    [symptom] = chat.say("KG-200")
    assert buttons(symptom)[:3] == ["Won't lock", "Won't unlock", "Error code shown"]
    [code] = chat.say("Keypad/fingerprint")
    assert "error code" in code["text"] and buttons(code) == ["No code", "Cancel"]
    [description] = chat.say("No code")
    assert "describe" in description["text"]
    [photo] = chat.say("The fingerprint reader ignores my finger.")
    card = ProblemCard.objects.get()
    assert f"card #{card.pk}" in photo["text"]
    assert buttons(photo) == ["Camera", "Photos", "No photo", "Cancel"]
    assert [item["action"]["type"] for item in photo["quickReply"]["items"][:2]] == [
        "camera",
        "cameraRoll",
    ]
    assert (card.customer_name, card.customer_line_user_id) == ("Chen Mei", "U1234567890abcdef")
    assert (card.brand, card.lock_model, card.symptom, card.error_code) == (
        "Kagiya",
        "KG-200",
        "keypad",
        "",
    )
    assert card.description == "The fingerprint reader ignores my finger."

    [diagnosis] = chat.say("No photo")
    assert diagnosis["text"].startswith("From the manuals:")
    assert "Sources: KG-200 fingerprint" in diagnosis["text"]
    assert buttons(diagnosis) == ["Solved", "Still broken"]
    intake = LineIntake.objects.get()
    assert (intake.status, intake.diagnosis_layer, intake.language) == ("completed", 2, "en")
    card.refresh_from_db()
    assert card.status == CardStatus.DIAGNOSED

    [told] = chat.tap(postback_data(diagnosis, "Still broken"))
    assert told["text"] == (
        f"Sorry it still does not work. A technician will contact you about card #{card.pk}."
    )
    intake.refresh_from_db()
    assert intake.customer_solved is False
    answer = Answer.objects.get(pk=card.diagnosis["answer_id"])
    assert answer.feedback == "not_helpful"  # the manuals' answer did not fix it
    # The whole conversation is in the session, both sides, in order.
    conversation = list(
        ChatMessage.objects.filter(session__key="line:U1234567890abcdef")
        .order_by("id")
        .values_list("is_bot", "content")
    )
    assert conversation[0] == (False, "repair")
    assert conversation[1] == (True, brand["text"])
    assert conversation[-2][0] is False and "still broken" in conversation[-2][1]
    assert conversation[-1] == (True, told["text"])


def test_a_japanese_report_with_a_photo_gets_the_similar_cases_fix(chat, offline, line_stub):
    make_case(resolution=MOTOR_CABLE, error_code="E-21")
    embedding_run()

    [brand] = chat.say("修理")
    assert brand["text"].startswith("故障の受付を始めます")
    assert buttons(brand) == ["Kagiya", "キャンセル"]  # brands already reported are offered
    chat.say("Kagiya")
    [symptom] = chat.say("KG-200")
    assert "エラー表示" in buttons(symptom)
    chat.say("エラー表示")
    chat.say("E-21")
    [photo] = chat.say("暗証番号を入れると E-21 が表示され、解錠できません。")
    card = ProblemCard.objects.exclude(status=CardStatus.RESOLVED).get()
    assert f"受付番号は #{card.pk}" in photo["text"] and "写真なし" in buttons(photo)

    [added] = chat.photo(PNG)
    assert added["text"] == "写真を受け取りました（1 枚目）。続けて送るか「完了」を押してください。"
    assert "完了" in buttons(added)
    [stored] = card.photos.all()
    assert (stored.content_type, stored.size) == ("image/png", len(PNG))
    assert line_stub.requests[-2]["path"].endswith("/content")

    [diagnosis] = chat.say("完了")
    assert diagnosis["text"].startswith("似た事例が次の方法で解決しています")
    assert MOTOR_CABLE in diagnosis["text"]
    card.refresh_from_db()
    assert card.symptom == "error_code" and card.error_code == "E-21"
    assert LineIntake.objects.get().diagnosis_layer == 1

    [thanks] = chat.tap(postback_data(diagnosis, "解決した"))
    assert thanks["text"].startswith("解決してよかったです")
    assert LineIntake.objects.get().customer_solved is True


def test_a_chinese_report_with_nothing_to_go_on_is_escalated_to_the_board(
    chat, offline, settings, client, django_user_model
):
    no_case_is_close_enough(settings)
    [brand] = chat.say("報修")
    assert brand["text"].startswith("我們來登記故障")
    chat.say("Nobody")
    chat.say("跳過")
    chat.say("外觀損壞")
    chat.say("沒有")
    chat.say("有人踢門，把手歪了。")
    [escalated] = chat.say("不用照片")
    card = ProblemCard.objects.get()
    assert escalated["text"] == f"目前找不到確定的解決方法，將由技師與您聯繫（報修單 #{card.pk}）。"
    assert "quickReply" not in escalated
    assert (card.status, card.diagnosis["layer"], card.lock_model, card.symptom) == (
        "open",
        3,
        "",
        "damage",
    )
    # On the dispatch board, waiting for a technician, marked as escalated and from LINE.
    staff = django_user_model.objects.create_superuser("boss", password="pw-123456789")
    client.force_login(staff)
    board = client.get("/dispatch/orders/").content.decode()
    assert f'id="card-{card.pk}"' in board and "escalated" in board and "LINE" in board
    # And its page shows the conversation beside the card.
    page = client.get(f"/dispatch/cases/{card.pk}/").content.decode()
    assert "有人踢門，把手歪了。" in page and escalated["text"] in page


def test_a_wrong_answer_is_explained_and_the_same_question_asked_again(chat, offline):
    chat.say("repair")
    chat.say("Kagiya")
    chat.say("Skip")
    [again] = chat.say("it is broken somehow")
    assert again["text"].startswith("Please tap one of the choices below.")
    assert "What is wrong?" in again["text"]
    chat.say("Other")
    [too_long] = chat.say("E" * 41)
    assert "error_code is longer than 40 characters" in too_long["text"]
    assert "Does the lock show an error code" in too_long["text"]
    assert LineIntake.objects.get().step == "error_code"


def test_cancel_ends_the_report_and_the_next_message_is_a_question(chat, embedded_manual):
    chat.say("repair")
    chat.say("Kagiya")
    [cancelled] = chat.say("Cancel")
    assert cancelled["text"].startswith("The report is cancelled.")
    assert LineIntake.objects.get().status == IntakeStatus.CANCELLED
    [answer] = chat.say("What does E-21 mean on the KG-200?")
    assert "Sources: KG-200 Manual" in answer["text"]
    assert not ProblemCard.objects.exists()


def test_a_report_left_unanswered_expires(chat, embedded_manual, settings):
    chat.say("repair")
    LineIntake.objects.update(updated_at=LineIntake.objects.get().updated_at.replace(year=2000))
    [answer] = chat.say("What does E-21 mean on the KG-200?")
    assert Answer.objects.filter(channel="line").exists() and "E-21" in answer["text"]
    assert LineIntake.objects.get().status == IntakeStatus.EXPIRED


def test_photos_outside_a_report_go_to_the_users_open_card_or_are_explained(
    chat, offline, line_stub
):
    [told] = chat.photo(PNG)
    assert told["text"].startswith("To send a photo of a fault, start a report first")
    assert buttons(told) == ["Report a fault"]

    chat.say("repair")
    [too_early] = chat.photo(PNG)
    assert too_early["text"].startswith("Please send photos once the report is filed")
    for answer in ("Kagiya", "Skip", "Battery", "No code"):
        chat.say(answer)
    chat.say("The battery icon flashes.")
    [refused] = chat.photo(b"not an image at all")
    assert refused["text"].startswith("That photo could not be added: ")
    assert "is not a JPEG, PNG, GIF or WebP image" in refused["text"]
    [gone] = chat.photo(None)  # LINE no longer has the content
    assert "HTTP 404" in gone["text"]
    chat.say("No photo")
    card = ProblemCard.objects.get()
    assert not card.photos.exists()

    [added] = chat.photo(PNG)  # after the report: to the open card
    assert added["text"] == f"The photo was added to card #{card.pk}."
    assert card.photos.count() == 1


def test_photos_of_one_user_never_go_to_another_users_card(client, line_stub, offline):
    alice = Chat(client, line_stub, user="Ualice000000000000000000000000001")
    bob = Chat(client, line_stub, user="Ubob00000000000000000000000000002")
    alice.say("repair")
    for answer in ("Kagiya", "Skip", "Battery", "No code", "Battery flashes.", "No photo"):
        alice.say(answer)
    [told] = bob.photo(PNG)
    assert told["text"].startswith("To send a photo of a fault")
    assert not ProblemCard.objects.get().photos.exists()
    # Bob cannot say Alice's diagnosis fixed anything either.
    card = ProblemCard.objects.get()
    assert bob.tap(f"action=solved&card={card.pk}&solved=1") == []
    assert LineIntake.objects.get().customer_solved is None


def test_a_report_whose_card_staff_deleted_is_over(chat, offline):
    chat.say("repair")
    for answer in ("Kagiya", "Skip", "Battery", "No code", "The battery icon flashes."):
        chat.say(answer)
    ProblemCard.objects.get().delete()
    [reply] = chat.say("Done")
    assert LineIntake.objects.get().status == IntakeStatus.CANCELLED
    assert Answer.objects.filter(channel="line", question="Done").exists()  # asked, as a question
    assert "card #" not in reply["text"]


def test_reports_are_listed_read_only_in_the_admin(chat, offline, client, django_user_model):
    chat.say("repair")
    chat.say("Kagiya")
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-12345678"))
    listing = client.get("/admin/line_channel/lineintake/")
    assert listing.status_code == 200 and "U1234567890abcdef" in listing.content.decode()
    intake = LineIntake.objects.get()
    assert client.get("/admin/line_channel/lineintake/add/").status_code == 403
    page = client.get(f"/admin/line_channel/lineintake/{intake.pk}/change/")
    assert page.status_code == 200 and "Kagiya" in page.content.decode()


def test_a_reply_that_cannot_be_sent_loses_neither_the_card_nor_the_conversation(
    chat, offline, line_stub
):
    chat.say("repair")
    for answer in ("Kagiya", "Skip", "Battery", "No code"):
        chat.say(answer)
    line_stub.fail_next(500, count=4)  # LINE is down: the profile and every try of the reply
    assert chat.say("The battery icon flashes.") == []
    card = ProblemCard.objects.get()
    assert card.customer_name == "LINE user …abcdef"  # no profile name: the id's tail
    reply = LineReply.objects.order_by("-id").first()
    assert (reply.status, reply.attempts) == ("failed", 3)
    assert f"card #{card.pk}" in reply.messages[0]["text"]  # kept, to be read or sent again
    assert LineIntake.objects.get().step == "photo"
    assert ChatMessage.objects.filter(is_bot=True, content=reply.messages[0]["text"]).exists()
    # The report goes on.
    [diagnosis] = chat.say("No photo")
    assert LineIntake.objects.get().status == "completed" and diagnosis["text"]
