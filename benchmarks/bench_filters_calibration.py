"""Calibrates the quality filters for Japanese (character mode) and Polish on parallel text, and
checks that junk is still caught.

    apt-get install -y --no-install-recommends debian-reference-en debian-reference-ja \
        manpages manpages-dev manpages-ja manpages-pl manpages-pl-dev
    .venv/bin/python benchmarks/bench_filters_calibration.py     # about 2 minutes on one core

Parallel documents (generated here, never committed):
- en/ja: the Debian Reference in English and Japanese. Its chapters have the same paragraphs in
  the same order in both languages (files with a different count are left out), so each
  document is a run of paragraphs of about 1,500 English characters and its translation;
- en/pl: man pages with the same name and section in manpages(-dev) and manpages-pl(-dev), of
  similar length (different upstream versions, so paragraphs do not align): each page is one
  document in each language.
Held out: the Japanese man pages (manpages-ja), not used to calibrate, only kept or not.

Calibration, Japanese (character mode): Gopher's thresholds are kept and the units are
calibrated: the characters per word that turn Gopher's word n-grams into character n-grams
(the smallest whose n-gram repetition checks pass the Japanese documents as often as their
English originals, within a point on average), the length of a short line (so the share of short lines matches at five
quantiles), and the character limits (Gopher's 50 and 100,000 words at the measured number of
Japanese characters per English word). Polish (word mode) keeps every English threshold and
gets its own stop words; the table shows the pass rate of each check in both languages.

Junk, made from every clean document: `repeated_lines` (a third of its lines repeated twice
more at the end), `boilerplate` (the document between a menu of 20 lines of one to three of its
words and a footer), `code_dump` (its first paragraph, then 40 generated shell and Python lines
with comments in its language). Results: benchmarks/results/filters_calibration.json and Markdown on
stdout, for the defaults before calibration (`--before`, that is Gopher's units in character
mode and no Polish stop words) and after.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
from textsources import SOURCES, _read, html_paragraphs, package_files, roff_paragraphs

from iptkit.transforms.stages.filters import CHECKS, FiltersConfig, evaluate
from iptkit.transforms.text.text_stats import ngram_units

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC_CHARS = 1500
QUANTILES = (50, 75, 90, 95, 98)
GAP = 0.01  # mean pass-rate gap to English accepted for the n-gram scale
NGRAM_CHECKS = [c.name for c in CHECKS if c.name.startswith(("top_", "dup_")) and "gram" in c.name]


def files(package: str, lang: str) -> dict[str, list[str]]:
    """Paragraphs of each file of a package's `lang` part, by file name up to its second dot
    (`ls.1`)."""
    (source,) = [s for s in SOURCES if s.package == package and s.lang == lang]
    out = {}
    for path in package_files(source):
        raw = _read(path)
        if source.kind == "man":
            if raw.lstrip().startswith(".so "):
                continue
            name = ".".join(os.path.basename(path).split(".")[:2])
            out[name] = roff_paragraphs(raw, lang)
        else:
            out[os.path.basename(path).split(".")[0]] = html_paragraphs(raw, lang)
    return out


def parallel_reference() -> list[tuple[str, str]]:
    """(English, Japanese) documents of the Debian Reference, paragraph-aligned."""
    en, ja = files("debian-reference-en", "en"), files("debian-reference-ja", "ja")
    pairs = []
    for name, paras in en.items():
        if len(ja.get(name, ())) != len(paras):
            continue
        start, size = 0, 0
        for i, para in enumerate(paras):
            size += len(para)
            if size >= DOC_CHARS or i == len(paras) - 1:
                pairs.append(
                    ("\n\n".join(paras[start : i + 1]), "\n\n".join(ja[name][start : i + 1]))
                )
                start, size = i + 1, 0
    return [p for p in pairs if len(p[0]) >= DOC_CHARS // 3]


def parallel_manpages() -> list[tuple[str, str]]:
    """(English, Polish) man pages of the same name and section whose lengths are within a
    factor of 1.5 (the Polish translations follow older upstream versions; a page rewritten
    since is not a translation of the English one any more)."""
    en = {**files("manpages", "en"), **files("manpages-dev", "en")}
    pl = {**files("manpages-pl", "pl"), **files("manpages-pl-dev", "pl")}
    pairs = [("\n\n".join(en[n]), "\n\n".join(pl[n])) for n in sorted(en) if n in pl]
    return [(a, b) for a, b in pairs if 1 / 1.5 <= len(b) / max(len(a), 1) <= 1.5]


def heldout_japanese() -> list[str]:
    docs = []
    for paras in files("manpages-ja", "ja").values():
        text = "\n\n".join(paras)
        if len(text) >= DOC_CHARS // 3:
            docs.append(text)
    return docs


# --- junk ---------------------------------------------------------------------------------------

_JA_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]{2,6}")
_COMMENT = {
    "en": ["# read the settings", "# retry on failure", "# clean up"],
    "ja": ["# 設定を読み込む", "# 失敗したら再試行する", "# 後片付け"],
    "pl": ["# wczytaj ustawienia", "# ponów przy błędzie", "# sprzątanie"],
}


def _words(text: str, lang: str) -> list[str]:
    return _JA_WORDS.findall(text) if lang == "ja" else re.findall(r"\w{3,}", text)


def repeated_lines(text: str, lang: str, rng: random.Random) -> str:
    """The document with a third of its lines (at least two) each repeated twice more at the end,
    as a page whose template repeats blocks."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    picked = rng.sample(lines, max(2, len(lines) // 3)) if len(lines) >= 2 else lines
    return text + "\n" + "\n".join(ln for ln in picked for _ in range(2))


def boilerplate(text: str, lang: str, rng: random.Random) -> str:
    """The document under a menu of 20 short lines and over a footer, as a page whose
    navigation the extractor kept."""
    words = _words(text, lang) or ["home"]
    sep = "" if lang == "ja" else " "
    menu = [sep.join(rng.sample(words, min(len(words), rng.randint(1, 3)))) for _ in range(20)]
    footer = {"en": "Copyright 2024 All rights reserved", "ja": "Copyright 2024 無断転載禁止",
              "pl": "Copyright 2024 Wszelkie prawa zastrzeżone"}[lang]  # fmt: skip
    return "\n".join([*menu, text, footer, " | ".join(rng.sample(words, min(len(words), 5)))])


def code_dump(text: str, lang: str, rng: random.Random) -> str:
    """The document's first paragraph and 40 lines of generated shell and Python, with comments
    in its language, as a code listing with a line of introduction."""
    names = [w.lower() for w in re.findall(r"[A-Za-z_]{3,}", text)] or ["value", "item", "path"]
    lines = [text.split("\n\n")[0]]
    for i in range(40):
        a, b = rng.choice(names), rng.choice(names)
        lines.append(
            rng.choice(
                [
                    f"{a}_{i} = {b}.get('{a}', {i})",
                    f"for {a} in {b}_{i}:",
                    f"    {a}.append({b}[{i}])",
                    f'if [ -f "$HOME/.{a}" ]; then cp "$HOME/.{a}" /tmp/{b}; fi',
                    f"export {a.upper()}_{i}=/usr/lib/{b}",
                    rng.choice(_COMMENT[lang]),
                ]
            )
        )
    return "\n".join(lines)


JUNK = {"repeated_lines": repeated_lines, "boilerplate": boilerplate, "code_dump": code_dump}


# --- measuring ---------------------------------------------------------------------------------


def verdicts(texts: list[str], lang: str, cfg: FiltersConfig) -> list[Any]:
    return [evaluate(t, lang, cfg, all_checks=True) for t in texts]


def keep_rate(texts: list[str], lang: str, cfg: FiltersConfig) -> tuple[float, dict[str, int]]:
    """Share kept, and the first failing check of each rejected text."""
    reasons: collections.Counter[str] = collections.Counter()
    for t in texts:
        v = evaluate(t, lang, cfg)
        if v.failed:
            reasons[v.failed[0].name] += 1
    return 1 - sum(reasons.values()) / len(texts), dict(reasons.most_common())


def pass_rates(found: list[Any]) -> dict[str, float]:
    """Per check: the share of texts it did not fail (among those it measured)."""
    measured: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    for v in found:
        measured.update(list(v.values))
        failed.update(f.name for f in v.failed)
    return {name: 1 - failed[name] / measured[name] for name in measured}


def calibrate_japanese(pairs: list[tuple[str, str]], base: FiltersConfig) -> dict[str, Any]:
    en_texts, ja_texts = [p[0] for p in pairs], [p[1] for p in pairs]
    en_pass = pass_rates(verdicts(en_texts, "en", base))
    scale_rows = []
    for cpw in (2, 3, 4, 5, 6):
        cfg = with_entry(base, "ja", {"chars_per_word": cpw})
        ja_pass = pass_rates(verdicts(ja_texts, "ja", cfg))
        gap = sum(abs(en_pass[n] - ja_pass[n]) for n in NGRAM_CHECKS) / len(NGRAM_CHECKS)
        scale_rows.append(
            {"chars_per_word": cpw, "mean_gap": gap, "ja": {n: ja_pass[n] for n in NGRAM_CHECKS}}
        )
    # The smallest scale within a point of English: a longer n-gram only makes repetition
    # harder to see.
    best = min((r for r in scale_rows if r["mean_gap"] <= GAP), key=lambda r: r["chars_per_word"])
    en_short = [verdicts([t], "en", base)[0].values["max_short_line_frac"] for t in en_texts]
    en_q = np.percentile(en_short, QUANTILES)
    short_rows = []
    for chars in range(6, 31, 2):
        cfg = with_entry(base, "ja", {"short_line_chars": chars})
        ja_short = [v.values["max_short_line_frac"] for v in verdicts(ja_texts, "ja", cfg)]
        short_rows.append(
            {"chars": chars, "gap": float(np.abs(np.percentile(ja_short, QUANTILES) - en_q).mean())}
        )
    short = min(short_rows, key=lambda r: (round(r["gap"], 3), r["chars"]))
    en_words = sum(len(t.split()) for t in en_texts)
    ja_chars = sum(ngram_units(t, True).chars for t in ja_texts)
    per_word = ja_chars / en_words
    return {
        "en_pass": {n: en_pass[n] for n in NGRAM_CHECKS},
        "scales": scale_rows,
        "chars_per_word": best["chars_per_word"],
        "short_line_en_quantiles": en_q.tolist(),
        "short_lines": short_rows,
        "short_line_chars": short["chars"],
        "ja_chars_per_en_word": per_word,
        "min_chars": round(50 * per_word),
        "max_chars": round(100_000 * per_word),
    }


def calibrate_polish(pairs: list[tuple[str, str]], base: FiltersConfig) -> dict[str, Any]:
    """One factor on Gopher's n-gram repetition thresholds for Polish: the largest (the most
    lenient) whose checks pass the Polish pages as often as the English ones, within a point on
    average. Polish inflects, so a repeated phrase is less often the same word n-gram."""
    en_pass = pass_rates(verdicts([p[0] for p in pairs], "en", base))
    rows = []
    for factor in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5):
        update = {n: round(getattr(base, n) * factor, 3) for n in NGRAM_CHECKS}
        cfg = with_entry(base, "pl", update)
        pl_pass = pass_rates(verdicts([p[1] for p in pairs], "pl", cfg))
        gap = sum(abs(en_pass[n] - pl_pass[n]) for n in NGRAM_CHECKS) / len(NGRAM_CHECKS)
        rows.append({"factor": factor, "mean_gap": gap, "thresholds": update,
                     "pl": {n: pl_pass[n] for n in NGRAM_CHECKS}})  # fmt: skip
    best = max((r for r in rows if r["mean_gap"] <= GAP), key=lambda r: r["factor"], default=None)
    best = best or min(rows, key=lambda r: r["mean_gap"])
    return {"en_pass": {n: en_pass[n] for n in NGRAM_CHECKS}, "factors": rows, "chosen": best}


def before_calibration(now: FiltersConfig) -> FiltersConfig:
    """The defaults as they were: Japanese with character mode's two characters a word, 100 to
    200,000 characters and FineWeb's 30-character short line; Polish with Gopher's thresholds
    and no stop words."""
    gopher = {n: getattr(now, n) for n in NGRAM_CHECKS}
    old_ja = {"chars_per_word": 2, "min_chars": 100, "max_chars": 200_000, "short_line_chars": 30}
    return FiltersConfig(
        overrides={"ja": old_ja, "pl": gopher},
        stop_words={lang: now.stop_words[lang] for lang in ("en", "ja")},
    )


def with_entry(cfg: FiltersConfig, key: str, update: dict[str, Any]) -> FiltersConfig:
    """`cfg` with `update` over its `key` entry of overrides."""
    overrides = {**cfg.overrides, key: {**cfg.overrides.get(key, {}), **update}}
    return cfg.model_copy(update={"overrides": overrides})


def table(cfg: FiltersConfig, groups: dict[str, tuple[list[str], str]], rng_seed: int):
    rows = {}
    for label, (texts, lang) in groups.items():
        kept, reasons = keep_rate(texts, lang, cfg)
        junk = {}
        for kind, make in JUNK.items():
            rng = random.Random(rng_seed)
            junk[kind] = 1 - keep_rate([make(t, lang, rng) for t in texts], lang, cfg)[0]
        rows[label] = {"docs": len(texts), "kept": kept, "reasons": reasons, "junk_caught": junk}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    ref = parallel_reference()
    man = parallel_manpages()
    held = heldout_japanese()
    now = FiltersConfig()
    gopher_units = before_calibration(now)
    calibration = calibrate_japanese(ref, gopher_units)
    calibration["pl"] = calibrate_polish(man, gopher_units)
    groups = {
        "Debian Reference en": ([p[0] for p in ref], "en"),
        "Debian Reference ja": ([p[1] for p in ref], "ja"),
        "man pages en (pl pairs)": ([p[0] for p in man], "en"),
        "man pages pl": ([p[1] for p in man], "pl"),
        "manpages-ja (held out)": (held, "ja"),
    }
    results = {
        "parallel_en_ja": len(ref),
        "parallel_en_pl": len(man),
        "heldout_ja": len(held),
        "calibration": calibration,
        "before": table(gopher_units, groups, args.seed),
        "after": table(now, groups, args.seed),
        "pl_pass": {
            lang: pass_rates(verdicts([p[i] for p in man], lang, now))
            for i, lang in enumerate(("en", "pl"))
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "filters_calibration.json").write_text(json.dumps(results, indent=2) + "\n")
    print_markdown(results)


def print_markdown(r: dict[str, Any]) -> None:
    c = r["calibration"]
    print(f"{r['parallel_en_ja']} en/ja document pairs, {r['parallel_en_pl']} en/pl man page "
          f"pairs, {r['heldout_ja']} held-out Japanese man pages\n")  # fmt: skip
    print("Characters per word for the n-gram checks (pass rate of each check, Japanese):\n")
    print("| chars/word | mean gap to English | " + " | ".join(NGRAM_CHECKS) + " |")
    print("|---:|---:|" + "---:|" * len(NGRAM_CHECKS))
    print(
        "| English (words) | | " + " | ".join(f"{c['en_pass'][n]:.3f}" for n in NGRAM_CHECKS) + " |"
    )
    for row in c["scales"]:
        cells = " | ".join(f"{row['ja'][n]:.3f}" for n in NGRAM_CHECKS)
        print(f"| {row['chars_per_word']} | {row['mean_gap']:.3f} | {cells} |")
    print(f"\nChosen: {c['chars_per_word']} characters per word.")
    gaps = ", ".join(f"{s['chars']}: {s['gap']:.3f}" for s in c["short_lines"])
    print(f"Short line (mean quantile gap to English at 30 characters): {gaps}; chosen "
          f"{c['short_line_chars']}.")  # fmt: skip
    print(f"Japanese characters per English word: {c['ja_chars_per_en_word']:.2f}; min_chars "
          f"{c['min_chars']}, max_chars {c['max_chars']}.\n")  # fmt: skip
    print("| documents | n | kept before | kept after | first reasons after | junk caught "
          "after (repeated lines / boilerplate / code dump) | before |")  # fmt: skip
    print("|---|---:|---:|---:|---|---|---|")
    for label, after in r["after"].items():
        before = r["before"][label]
        reasons = ", ".join(f"{k} {v}" for k, v in list(after["reasons"].items())[:3])
        junk_a = " / ".join(f"{x:.2f}" for x in after["junk_caught"].values())
        junk_b = " / ".join(f"{x:.2f}" for x in before["junk_caught"].values())
        print(f"| {label} | {after['docs']} | {100 * before['kept']:.1f}% | "
              f"{100 * after['kept']:.1f}% | {reasons} | {junk_a} | {junk_b} |")  # fmt: skip
    pl = c["pl"]
    print("\nPolish: one factor on the n-gram repetition thresholds (pass rates, Polish):\n")
    print("| factor | mean gap to English | " + " | ".join(NGRAM_CHECKS) + " |")
    print("|---:|---:|" + "---:|" * len(NGRAM_CHECKS))
    print("| English | | " + " | ".join(f"{pl['en_pass'][n]:.3f}" for n in NGRAM_CHECKS) + " |")
    for row in pl["factors"]:
        cells = " | ".join(f"{row['pl'][n]:.3f}" for n in NGRAM_CHECKS)
        print(f"| {row['factor']} | {row['mean_gap']:.3f} | {cells} |")
    print(f"\nChosen: {pl['chosen']['factor']}: {pl['chosen']['thresholds']}")
    print("\nPer-check pass rates on the en/pl man page pairs (checks that fail any):\n")
    print("| check | en | pl |\n|---|---:|---:|")
    en, pl = r["pl_pass"]["en"], r["pl_pass"]["pl"]
    for name in en:
        if min(en[name], pl.get(name, 1)) < 1:
            print(f"| {name} | {en[name]:.3f} | {pl.get(name, float('nan')):.3f} |")


if __name__ == "__main__":
    main()
