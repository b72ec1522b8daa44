"""Demo chat sessions about the demo corpus's Kagiya / Lumio locks (English, Japanese,
Traditional Chinese): two archived into knowledge, one still live, one bot-only (skipped)."""

from collections.abc import Iterable

from sessions_app.archiver import session_archive
from sessions_app.models import ChatSession
from sessions_app.services import MessageIn, session_append


def transcript_messages(
    lines: Iterable[tuple[str, bool, str]], *, id_prefix: str
) -> list[MessageIn]:
    """Messages for a transcript of (author, is_bot, text) lines: bots speak as the assistant,
    and each line gets the external id `<id_prefix>-<index>` (so loading it again adds nothing)."""
    return [
        MessageIn(
            content=text,
            author=author,
            is_bot=is_bot,
            role="assistant" if is_bot else "user",
            external_id=f"{id_prefix}-{index}",
        )
        for index, (author, is_bot, text) in enumerate(lines)
    ]


DEMO_SESSIONS = [
    (
        "discord:kagiya-support:e21-door",
        "KG-200 E-21 after winter",
        True,
        [
            ("mika", False, "My KG-200 shows E-21 every evening and the bolt stops halfway."),
            ("kioku", True, "E-21 is motor over-current. Does the bolt rub the strike plate?"),
            (
                "mika",
                False,
                "Yes, the door sags since the cold weather. You can reach me at 090-1234-5678.",
            ),
            ("kioku", True, "Loosen the strike plate screws, move it 1-2 mm up, and test again."),
            ("mika", False, "Moved it 2 mm up, E-21 is gone. Thanks!"),
        ],
    ),
    (
        "line:lumio-jp:battery",
        "LM-5 電池切れ",
        True,
        [
            ("佐藤", False, "LM-5 の電池が切れて、外から開けられません。"),
            ("kioku", True, "本体下部の非常用 USB-C 端子にモバイルバッテリーをつないでください。"),
            ("佐藤", False, "つないだら暗証番号で開きました。電池は単三 4 本ですか？"),
            ("kioku", True, "はい、アルカリ単三電池 4 本を全部同時に交換してください。"),
        ],
    ),
    (
        "web:shop-taipei:kg300-app",
        "KG-300 配對問題",
        False,
        [
            ("陳小姐", False, "KG-300 無法和手機 App 配對，藍牙已開啟。"),
            ("kioku", True, "請長按門鎖內側的 SET 鍵 5 秒，聽到提示音後再於 App 中搜尋。"),
        ],
    ),
    (
        "discord:kagiya-support:status-bot",
        "",
        True,
        [
            ("monitor", True, "Nightly check: 12 locks online, 0 alerts."),
            ("monitor", True, "Nightly check: 12 locks online, 1 low battery."),
        ],
    ),
]


def demo_is_loaded() -> bool:
    return ChatSession.objects.exists()


def demo_load() -> str:
    outcomes: dict[str, int] = {}
    for key, title, archive, lines in DEMO_SESSIONS:
        result = session_append(
            key=key, title=title, messages=transcript_messages(lines, id_prefix="demo")
        )
        if archive:
            outcome = session_archive(session_id=result.session_id).outcome
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    done = ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items()))
    return f"{len(DEMO_SESSIONS)} sessions ({done})"
