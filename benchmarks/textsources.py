"""Real prose from installed Debian documentation packages, as paragraphs grouped by file.

Why Debian packages: they are real, human-written, versioned and installable without the open
internet, in the three languages iptkit targets first (English, Japanese, Polish). The file list
of each package comes from `dpkg -L`, so the corpus depends on package versions only, not on
whatever else happens to be installed. Nothing here installs anything: see benchmarks/README.md
for the apt-get line.

Two formats cover every package used: HTML (the guides and the handbook) and roff (man pages).
Both are turned into paragraphs with the standard library only, so extraction is fast and gives
the same bytes on every machine (`man -l` would reflow and hyphenate by terminal width).
"""

from __future__ import annotations

import fnmatch
import gzip
import html.parser
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A Debian package and the files in it (fnmatch patterns on `dpkg -L` paths) of one language."""

    package: str
    lang: str
    kind: str  # "html" or "man"
    patterns: tuple[str, ...]


SOURCES: tuple[Source, ...] = (
    Source("debian-reference-en", "en", "html", ("/usr/share/debian-reference/*.en.html",)),
    Source("debian-reference-ja", "ja", "html", ("/usr/share/debian-reference/*.ja.html",)),
    Source("debian-handbook", "en", "html", ("*/html/en-US/*.html",)),
    Source("debian-handbook", "ja", "html", ("*/html/ja-JP/*.html",)),
    Source("debian-handbook", "pl", "html", ("*/html/pl-PL/*.html",)),
    Source("maint-guide", "en", "html", ("*/maint-guide/html/*.html",)),
    Source("maint-guide-ja", "ja", "html", ("*/maint-guide-ja/html/*.html",)),
    Source("debian-faq", "en", "html", ("/usr/share/doc/debian/FAQ/*.html",)),
    Source("debian-faq-ja", "ja", "html", ("/usr/share/doc/debian/FAQ/ja/*.html",)),
    Source("developers-reference", "en", "html", ("/usr/share/developers-reference/*.html",)),
    Source("developers-reference-ja", "ja", "html", ("/usr/share/developers-reference/ja/*.html",)),
    Source("debian-policy", "en", "html", ("/usr/share/doc/debian-policy/policy.html/*.html",)),
    Source(
        "debian-policy-ja", "ja", "html", ("/usr/share/doc/debian-policy/ja/policy.html/*.html",)
    ),
    Source("installation-guide-amd64", "en", "html", ("*/installation-guide-amd64/en/*.html",)),
    Source("installation-guide-amd64", "ja", "html", ("*/installation-guide-amd64/ja/*.html",)),
    Source("debian-edu-doc-legacy-pl", "pl", "html", ("*.html",)),
    Source("kicad-doc-pl", "pl", "html", ("*/help/pl/*.html",)),
    Source("manpages", "en", "man", ("/usr/share/man/man*/*.gz",)),
    Source("manpages-dev", "en", "man", ("/usr/share/man/man*/*.gz",)),
    Source("manpages-ja", "ja", "man", ("/usr/share/man/ja/man*/*.gz",)),
    Source("manpages-pl", "pl", "man", ("/usr/share/man/pl/man*/*.gz",)),
    Source("manpages-pl-dev", "pl", "man", ("/usr/share/man/pl/man*/*.gz",)),
)

PACKAGES = sorted({s.package for s in SOURCES})
APT_INSTALL = "apt-get install -y --no-install-recommends " + " ".join(PACKAGES)


@dataclass(frozen=True)
class TextFile:
    """The paragraphs of one file, in reading order; headings are paragraphs too."""

    path: str
    package: str
    lang: str
    paragraphs: tuple[str, ...]


def package_versions() -> dict[str, str]:
    """Installed version of every package the corpus reads; a missing package is an error."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Status}\n", *PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    versions = {
        name: version
        for name, version, status in (line.split("\t") for line in out.splitlines())
        if status == "installed"
    }
    missing = [p for p in PACKAGES if p not in versions]
    if missing:
        raise SystemExit(
            f"missing Debian packages: {' '.join(missing)}\ninstall with: {APT_INSTALL}"
        )
    return versions


def package_files(source: Source) -> list[str]:
    """The source's files, from the package's own file list (sorted, so order is stable).

    Symbolic links are left out: they are other names of a page already read.
    """
    out = subprocess.run(["dpkg", "-L", source.package], capture_output=True, text=True, check=True)
    paths = [
        p for p in out.stdout.splitlines() if any(fnmatch.fnmatch(p, g) for g in source.patterns)
    ]
    return sorted(p for p in paths if os.path.isfile(p) and not os.path.islink(p))


def read_files() -> Iterator[TextFile]:
    """Every source file as paragraphs; man pages that only point at another page are skipped."""
    for source in SOURCES:
        for path in package_files(source):
            raw = _read(path)
            if source.kind == "man":
                if raw.lstrip().startswith(".so "):
                    continue
                paragraphs = roff_paragraphs(raw, source.lang)
            else:
                paragraphs = html_paragraphs(raw, source.lang)
            if paragraphs:
                yield TextFile(path, source.package, source.lang, tuple(paragraphs))


def _read(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def join_lines(lines: list[str], lang: str) -> str:
    """Join wrapped source lines into one paragraph.

    Why language matters: Japanese is written without spaces, and its translators wrap lines
    anywhere, so a line break between two CJK characters must vanish rather than become a space.
    """
    text = ""
    for line in (ln.strip() for ln in lines):
        if not line:
            continue
        if not text:
            text = line
        elif lang == "ja" and (_CJK.match(line[0]) or _CJK.match(text[-1])):
            text += line
        else:
            text += " " + line
    return re.sub(r"[ \t]+", " ", text).strip()


# --- roff --------------------------------------------------------------------------------------

# Macros that end a paragraph; the text of .SH/.SS (a heading) becomes a paragraph of its own.
_BREAKS = {"SH", "SS", "PP", "LP", "P", "TP", "IP", "HP", "sp", "TQ", "RS", "RE", "Sh", "Pp", "It"}
_HEADINGS = {"SH", "SS", "Sh"}
# Macros whose arguments are running text in another font: keep the words.
_FONT = {"B", "I", "SM", "SB", "BR", "BI", "IB", "IR", "RB", "RI", "Nm", "Ar", "Fl", "Em"}
_NAMED = {
    "em": "\u2014",
    "en": "\u2013",
    "aq": "'",
    "dq": '"',
    "lq": "\u201c",
    "rq": "\u201d",
    "oq": "\u2018",
    "cq": "\u2019",
    "bu": "\u2022",
    "co": "\u00a9",
    "rg": "\u00ae",
    "hy": "-",
    "mi": "-",
    "ti": "~",
    "ha": "^",
    "rs": "\\",
    "at": "@",
    "sh": "#",
    "dg": "\u2020",
    "tm": "\u2122",
    "mu": "\u00d7",
    "de": "\u00b0",
    "Fo": "\u00ab",
    "Fc": "\u00bb",
    "r!": "\u00a1",
}
_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\*\[(\w+)\]"), lambda m: _NAMED.get(m.group(1), "")),
    (re.compile(r"\\\*\((..)"), lambda m: _NAMED.get(m.group(1), "")),
    (re.compile(r"\\\[(\w+)\]"), lambda m: _NAMED.get(m.group(1), "")),
    (re.compile(r"\\\((..)"), lambda m: _NAMED.get(m.group(1), "")),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\[&,/:|^%c)]"), ""),
    (re.compile(r"\\[nk*]\S"), ""),
    (re.compile(r"\\."), ""),
]


def roff_unescape(line: str) -> str:
    """Plain text of one roff line: fonts, sizes and named characters resolved or dropped."""
    for pattern, repl in _ESCAPES:
        line = pattern.sub(repl, line)
    return line


def _macro_text(name: str, args: str) -> str:
    words = re.findall(r'"([^"]*)"|(\S+)', args)
    parts = [a or b for a, b in words]
    # .BR, .IR, ... alternate fonts between arguments with no space between them.
    sep = "" if len(name) == 2 and name.isupper() and name != "SM" and name != "SB" else " "
    return sep.join(parts)


def roff_paragraphs(source: str, lang: str) -> list[str]:
    """Paragraphs of a man page: running text only; no-fill blocks (examples, tables) are left out."""
    paragraphs: list[str] = []
    lines: list[str] = []
    nofill = False

    def flush() -> None:
        text = roff_unescape(join_lines(lines, lang))
        if text:
            paragraphs.append(text)
        lines.clear()

    for raw in source.splitlines():
        if raw.startswith(('.\\"', "'\\\"", '\\"', ".\\#")):
            continue
        if raw.startswith((".", "'")):
            name, _, args = raw[1:].strip().partition(" ")
            if name in ("nf", "EX", "TS", "EQ", "PS", "Bd"):
                flush()
                nofill = True
            elif name in ("fi", "EE", "TE", "EN", "PE", "Ed"):
                nofill = False
            elif name in _BREAKS:
                flush()
                if name in _HEADINGS and args.strip():
                    lines.append(_macro_text("B", args))
                    flush()
            elif name in _FONT and not nofill:
                lines.append(_macro_text(name, args))
            continue
        if not nofill:
            lines.append(raw)
    flush()
    return paragraphs


# --- HTML --------------------------------------------------------------------------------------

_BLOCK = {
    "p",
    "div",
    "li",
    "dd",
    "dt",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "td",
    "th",
    "tr",
    "table",
    "blockquote",
    "section",
    "ul",
    "ol",
    "dl",
    "br",
    "title",
    "caption",
    "figure",
}
_SKIP_TAGS = {"script", "style", "pre", "head", "nav", "footer", "header", "table"}
_SKIP_CLASSES = {
    "navheader",
    "navfooter",
    "docnav",
    "toc",
    "list-of-tables",
    "list-of-figures",
    "list-of-examples",
    "sphinxsidebar",
    "related",
    "footer",
    "breadcrumbs",
    "indexterm",
}


class _Paragraphs(html.parser.HTMLParser):
    """Collects the text of block elements.

    Skipped: navigation, tables of contents, code listings and tables (package lists and
    layout, whose cells are not prose).
    """

    def __init__(self, lang: str):
        super().__init__(convert_charrefs=True)
        self.lang = lang
        self.paragraphs: list[str] = []
        self._pieces: list[str] = []  # text of the current block, inline markup already dropped
        self._skip: list[str] = []  # tags still open inside a skipped element

    def _flush(self) -> None:
        text = join_lines("".join(self._pieces).splitlines(), self.lang)
        if text:
            self.paragraphs.append(text)
        self._pieces.clear()

    def handle_starttag(self, tag, attrs):
        if self._skip:
            if tag not in html.parser.HTMLParser.CDATA_CONTENT_ELEMENTS and tag != "br":
                self._skip.append(tag)
            return
        classes = set((dict(attrs).get("class") or "").split())
        if tag in _SKIP_TAGS or classes & _SKIP_CLASSES:
            self._flush()
            self._skip.append(tag)
        elif tag in _BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if self._skip:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag in _BLOCK:
            self._flush()

    def handle_data(self, data):
        if not self._skip:
            self._pieces.append(data)


def html_paragraphs(source: str, lang: str) -> list[str]:
    """Paragraphs of an HTML page, in reading order."""
    parser = _Paragraphs(lang)
    parser.feed(source)
    parser.close()
    parser._flush()
    return parser.paragraphs


# --- language of a paragraph -------------------------------------------------------------------

_KANA_HAN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")
_POLISH_LETTERS = re.compile("[ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]")
_STOPWORDS = {
    "en": frozenset(
        "the of and to in is that for it as with be on are this by or not an from at "
        "which can if you your will has have was its".split()
    ),
    "pl": frozenset(
        "i w z na się nie jest do to że jak o od po co dla oraz przez jeśli lub są "
        "być tylko może przy tak ten".split()
    ),
}


def paragraph_lang(text: str) -> str | None:
    """The language of a paragraph by script, stopwords and Polish letters; None when unsure.

    Why not a model: the corpus is the ground truth for the language-ID benchmark, so its labels
    must not come from the classifier under test. Translated Debian documents leave many
    paragraphs untranslated; this check keeps a Polish file's English paragraphs out of `pl`.
    """
    letters = sum(ch.isalpha() for ch in text)
    if letters and len(_KANA_HAN.findall(text)) / letters >= 0.3:
        return "ja"
    words = re.findall(r"\w+", text.lower())
    en, pl = (sum(w in _STOPWORDS[lang] for w in words) for lang in ("en", "pl"))
    if pl > en or (len(_POLISH_LETTERS.findall(text)) >= 2 and en < 2):
        return "pl"
    return "en" if en >= 2 and en > 2 * pl else None
