"""Translation, response and the shared language checks on crafted good and bad outputs, with
the real fastText model."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from iptkit.transforms.stages.langid import LangId, LangidConfig
from iptkit.transforms.text.language_checks import (
    MIN_SCRIPT_RATIO,
    LanguageChecks,
    check_language,
    check_script_ratio,
    min_ratio,
    target_char_ratio,
)
from iptkit.transforms.text.response_checks import (
    RESPONSE_LANGUAGE_REASONS,
    ResponseChecks,
    check_response,
)
from iptkit.transforms.text.text_stats import word_units
from iptkit.transforms.text.translation_checks import (
    TranslationChecks,
    check_placeholders,
    check_translation,
    protected_spans,
)

SOURCE = (
    "How do I read a file line by line in Python? Here is my attempt:\n"
    "```python\nwith open(path) as f:\n    for line in f:\n        print(line)\n```\n"
    "It prints an empty line between the rows of the file, which I do not want. "
    "The documentation is at https://docs.python.org/3/tutorial/inputoutput.html."
)
GOOD = (
    "Pythonでファイルを1行ずつ読み込むにはどうすればよいですか？私の試したコードは次のとおりです。\n"
    "```python\nwith open(path) as f:\n    for line in f:\n        print(line)\n```\n"
    "ファイルの行と行の間に空行が出力されてしまいますが、これは望んでいません。"
    "ドキュメントは https://docs.python.org/3/tutorial/inputoutput.html にあります。"
)
PROMPT = (
    f"Translate the following English text into Japanese. Output only the translation.\n\n{SOURCE}"
)

REDACTED = "Write a birthday message for NAME_1 from her colleagues NAME_2 and NAME_3."
REDACTED_JA = "同僚のNAME_2とNAME_3から、NAME_1への誕生日メッセージを書いてください。"

BAD = {
    # Chinese is written in Han, which passes the Japanese script ratio: language ID catches it.
    "wrong_language": (
        SOURCE,
        "如何在Python中逐行读取文件？这是我的尝试：\n"
        "```python\nwith open(path) as f:\n    for line in f:\n        print(line)\n```\n"
        "它会在文件的各行之间打印一个空行，这不是我想要的。"
        "文档位于 https://docs.python.org/3/tutorial/inputoutput.html 。",
    ),
    "untranslated": (
        SOURCE,
        "Pythonでファイルを1行ずつ読み込むにはどうすればよいですか？私の試したコードは次のとおりです。\n"
        "```python\nwith open(path) as f:\n    for line in f:\n        print(line)\n```\n"
        "It prints an empty line between the rows of the file, which I do not want. "
        "ドキュメントは https://docs.python.org/3/tutorial/inputoutput.html にあります。",
    ),
    # English leftovers reworded, not copied: only the script ratio sees them.
    "script_ratio": (
        "Explain photosynthesis to a ten-year-old, using an example from the garden.",
        "10歳の子に photosynthesis explained simply, with a garden example please.",
    ),
    "echo_prompt": (
        SOURCE,
        "Translate the following English text into Japanese. Output only the translation.\n" + GOOD,
    ),
    "echo_source": (SOURCE, SOURCE),
    "truncated": (
        "Explain photosynthesis to a ten-year-old, using an example from the garden. "
        "Keep it under five sentences.",
        "10歳の子どもに、庭の例を使って光合成を説明してください。説明は5文以内に",
    ),
    "length_ratio": (
        "Plan a three-day trip to Kyoto for a family with two children who love trains, "
        "animals and old temples, and tell us where to stay and what to eat each day.",
        "京都の三日間の旅。",
    ),
    "code_changed": (SOURCE, GOOD.replace("print(line)", "print(line)  # 行を表示")),
    "placeholder_lost": (REDACTED, REDACTED_JA.replace("NAME_1", "名前1")),
    "empty_output": (SOURCE, "  \n"),
}


@pytest.fixture(scope="module")
def predict():
    lid = LangId(LangidConfig())
    lid.setup()
    return lid.predict


def test_good_translations_pass(predict):
    checks = TranslationChecks()
    assert check_translation(SOURCE, GOOD, "ja", predict, checks, prompt=PROMPT) is None
    assert check_translation(REDACTED, REDACTED_JA, "ja", predict, checks) is None
    short = (
        "Explain photosynthesis to a ten-year-old.",
        "10歳の子どもに光合成を説明してください。",
    )
    assert check_translation(*short, "ja", predict, checks) is None
    # The other direction: Japanese to English.
    assert check_translation(GOOD, SOURCE, "en", predict, checks) is None


@pytest.mark.parametrize("reason", sorted(BAD))
def test_bad_translations_fail_with_their_reason(predict, reason):
    source, output = BAD[reason]
    drop = check_translation(source, output, "ja", predict, TranslationChecks(), prompt=PROMPT)
    assert drop is not None and drop.reason == reason, drop
    assert drop.detail


def test_checks_can_be_turned_off(predict):
    lenient = TranslationChecks(code=False, placeholders=False, script_ratio={})
    source, output = BAD["code_changed"]
    assert check_translation(source, output, "ja", predict, lenient) is None
    source, output = BAD["placeholder_lost"]
    assert check_translation(source, output, "ja", predict, lenient) is None


def test_placeholders_found_and_counted():
    text = "Hi {name}, {0}% done (%s, %(user)s); see https://a.example/x?y=1. Run `ls -l`. NAME_12"
    assert protected_spans(text) == [
        "{name}",
        "{0}",
        "%s",
        "%(user)s",
        "https://a.example/x?y=1",
        "`ls -l`",
        "NAME_12",
    ]
    assert check_placeholders("NAME_1 and NAME_1", "NAME_1と誰か").detail.endswith("NAME_1")


def test_word_units_put_english_and_japanese_on_one_scale():
    ratio = word_units(GOOD) / word_units(SOURCE)
    assert 0.8 < ratio < 2.0


def test_response_checks_count_with_a_real_tokenizer():
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([SOURCE], trainers.WordLevelTrainer(special_tokens=["<unk>"]))

    def count(text: str) -> int:
        return len(tok.encode(text).ids)

    assert check_response("Use a for loop over the file object.", count, 20) is None
    assert check_response(" \n", count, 20).reason == "empty_response"
    long = "word " * 30
    drop = check_response(long, count, 20)
    assert drop.reason == "response_too_long" and drop.detail.startswith("30 tokens")


def test_language_checks_are_one_piece_for_translations_and_responses(predict):
    # The lowest ratio of a tag is its own, else its base language's (Ma et al.: ja 0.60).
    assert min_ratio(MIN_SCRIPT_RATIO, "ja-JP") == min_ratio(MIN_SCRIPT_RATIO, "ja") == 0.6
    assert min_ratio(MIN_SCRIPT_RATIO, "en") is None and min_ratio({"ja-JP": 0.9}, "ja") is None
    # Prose letters only; none, or a language of unknown scripts: no ratio, and no failure.
    assert target_char_ratio("日本 https://example.com/path `code` NAME_1", "ja") == 1.0
    assert target_char_ratio("```\nprint(1)\n``` 12", "ja") is None
    assert target_char_ratio("text", "xx") is None
    assert check_script_ratio("```\nprint(1)\n```", "ja", 0.6) is None
    drop = check_script_ratio("日本 is big", "ja", 0.6, reason="off_target_script")
    assert drop.reason == "off_target_script" and drop.detail.startswith("0.2857 of letters")
    # One language-ID check, its outcomes named by each stage.
    code_only = "```\nprint(1)\n```"
    assert check_language(code_only, "ja", predict, 0.5).reason == "no_language"
    assert check_language(code_only, "ja", predict, 0.5, RESPONSE_LANGUAGE_REASONS) is None
    chinese = "东京是日本的首都，也是最大的城市。"
    assert check_language(chinese, "ja", predict, 0.5).reason == "wrong_language"
    assert (
        check_language(chinese, "ja", predict, 0.5, RESPONSE_LANGUAGE_REASONS).reason
        == "off_target_lang"
    )
    assert check_language("東京は日本の首都です。", "ja", predict, 0.5) is None
    # translate's thresholds are LanguageChecks', as respond's are.
    assert issubclass(TranslationChecks, LanguageChecks)
    assert issubclass(ResponseChecks, LanguageChecks)
    assert TranslationChecks().script_ratio == ResponseChecks().script_ratio == {"ja": 0.6}
