"""normalize: the pure text function and the record stage, without Beam."""

from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.normalize import Normalize, NormalizeConfig, normalize_text


def cfg(**kw) -> NormalizeConfig:
    return NormalizeConfig(**kw)


def test_nfc_composes_and_nfkc_folds_width():
    assert normalize_text("Cafe\u0301", cfg()) == "Café"
    assert normalize_text("ＡＢＣ１２３ ｶﾀｶﾅ", cfg(form="NFKC")) == "ABC123 カタカナ"
    # NFC leaves compatibility characters alone.
    assert normalize_text("ＡＢＣ", cfg()) == "ＡＢＣ"


def test_controls_and_zero_width_marks_removed_but_zwj_kept():
    text = "bell\x07 here\u200b and\ufeff soft\u00adhyphen, family 👨\u200d👩"
    assert normalize_text(text, cfg()) == "bell here and softhyphen, family 👨\u200d👩"
    assert "\x07" in normalize_text(text, cfg(control_chars="keep"))


def test_whitespace_collapsed_inside_lines_indentation_kept():
    text = "\r\n\r\ntitle  with\u00a0\u00a0spaces\t\r\n    indented   code()  \r\n\r\n\r\n\r\nend\u3000\n"
    assert normalize_text(text, cfg()) == "title with spaces\n    indented code()\n\nend"
    assert (
        normalize_text(text, cfg(max_blank_lines=0))
        == "title with spaces\n    indented code()\nend"
    )
    kept = normalize_text("a  b", cfg(whitespace="keep"))
    assert kept == "a  b"


def test_ideographic_space_inside_japanese_kept_under_nfc():
    assert normalize_text("日本語\u3000テキスト", cfg()) == "日本語\u3000テキスト"
    assert normalize_text("日本語\u3000テキスト", cfg(form="NFKC")) == "日本語 テキスト"


def test_invalid_utf8_rejected_or_replaced():
    broken = b"good \xff\xfe bytes \xc3".decode("utf-8", "surrogateescape")
    dropped = normalize_text(broken, cfg())
    assert isinstance(dropped, Drop) and dropped.reason == "invalid_utf8"
    assert "3 byte(s)" in dropped.detail and "character 5" in dropped.detail
    assert normalize_text(broken, cfg(invalid_utf8="replace")) == "good \ufffd\ufffd bytes \ufffd"


def test_empty_after_normalize():
    out = normalize_text("\x00\x07  \u200b\n\n", cfg())
    assert isinstance(out, Drop) and out.reason == "empty_after_normalize"


def test_stage_normalizes_pairs_and_conversation_without_mutating_input():
    record = Record(
        id="x",
        source="s",
        text="Q\u00a0 text",
        pairs=[{"instruction": "Ｑ", "response": "Ａ  b"}],
        meta={
            "conversation": [
                {"role": "user", "content": "hi  there"},
                {"role": "assistant", "content": "\x07"},
            ]
        },
    )
    out = Normalize(cfg(form="NFKC")).apply(record)
    assert out.text == "Q text"
    assert out.pairs == [{"instruction": "Q", "response": "A b"}]
    assert out.meta["conversation"] == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": ""},
    ]
    assert (
        record.text == "Q\u00a0 text" and record.meta["conversation"][0]["content"] == "hi  there"
    )


def test_stage_rejects_bad_bytes_in_a_pair_naming_the_field():
    bad = b"\xff".decode("utf-8", "surrogateescape")
    record = Record(id="x", source="s", text="fine", pairs=[{"instruction": "q", "response": bad}])
    out = Normalize(cfg()).apply(record)
    assert isinstance(out, Drop) and out.reason == "invalid_utf8"
    assert out.detail.startswith("pairs[0].response")
