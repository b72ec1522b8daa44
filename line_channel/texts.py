"""What the LINE bot says, in the customer's language: Traditional Chinese (zh), Japanese (ja) and
English (en). One table, so a wording is changed in one place and every language stays complete
(tests/line_channel/test_texts.py checks that)."""

import unicodedata

from dispatch.models import Symptom
from knowledge.models import Answer, AnswerOutcome
from line_channel.messaging import fit_text

LANGUAGES = ("zh", "ja", "en")

TEXTS: dict[str, dict[str, str]] = {
    "ask_brand": {
        "zh": "我們來登記故障。請問您的電子鎖是什麼品牌？請點選或直接輸入。",
        "ja": "故障の受付を始めます。錠のメーカーを選ぶか、入力してください。",
        "en": "Let's report the fault. Which brand is your lock? Tap one, or type it.",
    },
    "ask_model": {
        "zh": "請問型號是？（通常在電池蓋內側的標籤上）不知道請點「跳過」。",
        "ja": "型番は？（電池カバーの内側のラベルにあります）わからなければ「スキップ」を押してください。",
        "en": "Which model is it? (It is on a label inside the battery cover.) Tap Skip if you "
        "don't know.",
    },
    "ask_symptom": {
        "zh": "請問是什麼問題？請點選最接近的一項。",
        "ja": "どのような症状ですか？近いものを選んでください。",
        "en": "What is wrong? Tap the closest one.",
    },
    "ask_error_code": {
        "zh": "門鎖有顯示錯誤碼嗎（例如 E-21）？請輸入，沒有請點「沒有」。",
        "ja": "エラーコード（例: E-21）は表示されていますか？入力するか「なし」を押してください。",
        "en": "Does the lock show an error code (e.g. E-21)? Type it, or tap No code.",
    },
    "ask_description": {
        "zh": "請用您自己的話描述發生的狀況。",
        "ja": "どのような状態か、詳しく教えてください。",
        "en": "Please describe what happens, in your own words.",
    },
    "ask_photo": {
        "zh": "謝謝！您的報修單號是 #{card}。如果方便，請傳送門鎖的照片（可多張），或點「不用照片」。",
        "ja": "ありがとうございます。受付番号は #{card} です。錠の写真があれば送ってください"
        "（複数可）。なければ「写真なし」を押してください。",
        "en": "Thank you. Your report is card #{card}. A photo of the lock helps: send one (or "
        "several), or tap No photo.",
    },
    "photo_added": {
        "zh": "已收到第 {count} 張照片。可以再傳，或點「完成」。",
        "ja": "写真を受け取りました（{count} 枚目）。続けて送るか「完了」を押してください。",
        "en": "Photo {count} added. Send another, or tap Done.",
    },
    "photo_added_to_card": {
        "zh": "照片已加入報修單 #{card}。",
        "ja": "写真を受付番号 #{card} に追加しました。",
        "en": "The photo was added to card #{card}.",
    },
    "photo_refused": {
        "zh": "這張照片無法加入：{reason}",
        "ja": "この写真は追加できませんでした：{reason}",
        "en": "That photo could not be added: {reason}",
    },
    "photo_expected": {
        "zh": "請傳送照片，或點「完成」。",
        "ja": "写真を送るか「完了」を押してください。",
        "en": "Send a photo, or tap Done.",
    },
    "photo_too_early": {
        "zh": "收到照片了，但報修單還沒建立。請先回答上面的問題，之後再傳照片。",
        "ja": "写真は、受付が済んでから送ってください。まず上の質問にお答えください。",
        "en": "Please send photos once the report is filed: answer the question above first, "
        "then send the photo again.",
    },
    "photo_without_card": {
        "zh": "想傳照片報修的話，請先點「我要報修」開始登記。",
        "ja": "写真で故障を知らせるには、まず「故障を報告」から受付を始めてください。",
        "en": "To send a photo of a fault, start a report first: tap Report a fault.",
    },
    "symptom_unknown": {
        "zh": "請點選下面其中一項。",
        "ja": "下の選択肢から選んでください。",
        "en": "Please tap one of the choices below.",
    },
    "invalid": {
        "zh": "這個回答無法使用：{reason}",
        "ja": "この回答は使えません：{reason}",
        "en": "That answer cannot be used: {reason}",
    },
    "layer_case": {
        "zh": "我們找到一個類似且已解決的案例，處理方式如下：\n{resolution}\n\n問題解決了嗎？",
        "ja": "似た事例が次の方法で解決しています：\n{resolution}\n\n解決しましたか？",
        "en": "A similar case was solved like this:\n{resolution}\n\nDid this fix it?",
    },
    "layer_manual": {
        "zh": "根據說明書：\n{answer}\n\n問題解決了嗎？",
        "ja": "取扱説明書によると：\n{answer}\n\n解決しましたか？",
        "en": "From the manuals:\n{answer}\n\nDid this fix it?",
    },
    "layer_technician": {
        "zh": "目前找不到確定的解決方法，將由技師與您聯繫（報修單 #{card}）。",
        "ja": "確実な解決方法が見つかりませんでした。技術者からご連絡します（受付番号 #{card}）。",
        "en": "We could not find a fix we are sure of. A technician will contact you about "
        "card #{card}.",
    },
    "solved": {
        "zh": "太好了！報修單 #{card} 已記錄為已解決。",
        "ja": "解決してよかったです。受付番号 #{card} は解決として記録しました。",
        "en": "Glad it works again. Card #{card} is noted as solved.",
    },
    "still_broken": {
        "zh": "很抱歉還沒解決。將由技師與您聯繫（報修單 #{card}）。",
        "ja": "解決せず申し訳ありません。技術者からご連絡します（受付番号 #{card}）。",
        "en": "Sorry it still does not work. A technician will contact you about card #{card}.",
    },
    "cancelled": {
        "zh": "已取消報修。有問題可以直接問我，或輸入「報修」重新開始。",
        "ja": "受付を取り消しました。質問はそのまま送ってください。「修理」で受付をやり直せます。",
        "en": "The report is cancelled. Ask me anything, or type repair to start again.",
    },
    "thanks_feedback": {
        "zh": "謝謝您的回饋！",
        "ja": "ご意見ありがとうございます。",
        "en": "Thank you for the feedback.",
    },
    "too_fast": {
        "zh": "訊息傳送太快了，請稍等一分鐘再試。",
        "ja": "メッセージが多すぎます。1分ほど待ってから送ってください。",
        "en": "You are sending messages too fast. Please wait a minute and try again.",
    },
    "staff_only": {
        "zh": "這是工作人員專用的指令。請直接用您自己的話提問。",
        "ja": "これはスタッフ用のコマンドです。質問はご自身の言葉で送ってください。",
        "en": "This command is for staff. Ask your question in your own words instead.",
    },
    "sources": {"zh": "來源", "ja": "出典", "en": "Sources"},
    # Quick-reply labels (LINE shows at most 20 characters).
    "button_skip": {"zh": "跳過", "ja": "スキップ", "en": "Skip"},
    "button_no_code": {"zh": "沒有", "ja": "なし", "en": "No code"},
    "button_no_photo": {"zh": "不用照片", "ja": "写真なし", "en": "No photo"},
    "button_done": {"zh": "完成", "ja": "完了", "en": "Done"},
    "button_cancel": {"zh": "取消", "ja": "キャンセル", "en": "Cancel"},
    "button_camera": {"zh": "拍照", "ja": "カメラ", "en": "Camera"},
    "button_camera_roll": {"zh": "相簿", "ja": "写真を選ぶ", "en": "Photos"},
    "button_solved": {"zh": "解決了", "ja": "解決した", "en": "Solved"},
    "button_still_broken": {"zh": "還沒解決", "ja": "解決しない", "en": "Still broken"},
    "button_helpful": {"zh": "有幫助", "ja": "役に立った", "en": "Helpful"},
    "button_not_helpful": {"zh": "沒幫助", "ja": "役に立たない", "en": "Not helpful"},
    "button_report": {"zh": "我要報修", "ja": "故障を報告", "en": "Report a fault"},
    # What the report button sends: a start word (START_WORDS) in that language.
    "report_word": {"zh": "報修", "ja": "修理", "en": "repair"},
}

SYMPTOM_LABELS: dict[str, dict[str, str]] = {
    Symptom.WONT_LOCK: {"zh": "無法上鎖", "ja": "施錠できない", "en": "Won't lock"},
    Symptom.WONT_UNLOCK: {"zh": "無法開鎖", "ja": "解錠できない", "en": "Won't unlock"},
    Symptom.ERROR_CODE: {"zh": "顯示錯誤碼", "ja": "エラー表示", "en": "Error code shown"},
    Symptom.BATTERY: {"zh": "電池問題", "ja": "電池", "en": "Battery"},
    Symptom.KEYPAD: {"zh": "密碼/指紋", "ja": "テンキー・指紋", "en": "Keypad/fingerprint"},
    Symptom.APP: {"zh": "App/藍牙", "ja": "アプリ・Bluetooth", "en": "App/Bluetooth"},
    Symptom.NOISE: {"zh": "異音", "ja": "異音", "en": "Noise"},
    Symptom.DAMAGE: {"zh": "外觀損壞", "ja": "破損", "en": "Damage"},
    Symptom.OTHER: {"zh": "其他", "ja": "その他", "en": "Other"},
}

# Words that start a report, and the language the intake then speaks.
START_WORDS: dict[str, str] = {
    "repair": "en",
    "report": "en",
    "report a fault": "en",
    "報修": "zh",
    "报修": "zh",
    "我要報修": "zh",
    "修理": "ja",
    "修理依頼": "ja",
    "故障を報告": "ja",
}


def say(key: str, language: str, **values: object) -> str:
    """The text `key` in `language` (English for a language the bot does not speak)."""
    variants = TEXTS[key]
    return variants.get(language, variants["en"]).format(**values)


def words(*keys: str) -> set[str]:
    """Every language's wording of these buttons, folded: a customer may tap or type any."""
    return {fold(text) for key in keys for text in TEXTS[key].values()}


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def answer_reply_text(answer: Answer, *, language: str | None = None) -> str:
    """The answer and, when it cites passages, the titles of their sources (LINE shows no links
    to our pages), labelled in `language` (default: the answer's), within LINE's length limit."""
    text = answer.answer
    if answer.outcome == AnswerOutcome.ANSWERED:
        titles = list(
            dict.fromkeys(answer.sources.filter(cited=True).values_list("source_title", flat=True))
        )
        if titles:
            label = say("sources", language or answer.language)
            text += f"\n\n{label}: " + " / ".join(titles)
    return fit_text(text)
