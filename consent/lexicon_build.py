"""Regenerates consent/lexicon_data.py, the word data consent.matcher reads, from WordNet 3.0.

    apt-get install wordnet-base wordnet-sense-index      # Debian's Princeton WordNet 3.0
    .venv/bin/python -m consent.lexicon_build [/usr/share/wordnet] [consent/lexicon_data.py]

It reads data.noun (noun synsets, their lemmas and hyponym pointers), index.sense (every
sense of every lemma with its SemCor tag count), and noun.exc (irregular plurals), and writes
a compact text table, lzma-compressed and base64-encoded into a Python module (a .py file, so
it is installed wherever the consent package is, with no package-data setting):

- one line per noun synset: its lemmas, marked, and its direct hyponyms (kinds only: instance
  hyponyms, such as named people or places, are left out);
- how many senses (all parts of speech) each lemma, run together, has when more than one;
- every lemma of every part of speech, written as one word (the "ordinary words");
- the irregular noun plurals.

A lemma is flagged *root* in the synset that is its first (most frequent) noun sense: a
restriction's word expands from there. It is flagged *strong* in the synset that is its most
frequent sense of all parts of speech, by a margin and with at least 3 SemCor tags ("wine"
the drink, tagged 9 times of 11). consent.matcher counts a lemma as a narrower term when the
kind is its strong sense, or when every sense it has lies below the term, so "tarantula" and
"lager" are kinds of what they are kinds of, while "stout" (mostly an adjective), "port"
(mostly a harbour), "screwdriver" (mostly a tool) and "vintage" (also a year) are not kinds
of alcohol. A lemma is flagged *never a kind* when it is initials or a code ("SAM", "LSD"),
the plural of another word ("knuckles", "spirits"), or slang ("street names", and WordNet's
slang, colloquialism, disparagement and ethnic-slur usage domains: "max" for GHB, "Elvis"
for LSD), since ordinary words and names collide with those.

Run only by hand, when the data should change; nothing reads WordNet at run time.
"""

from __future__ import annotations

import base64
import lzma
import sys
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path

__all__ = ["build", "main"]

_POS_BY_TYPE = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
# SemCor tags a lemma's sense needs, and more than any other sense of it, to be its strong one
_STRONG = 3
# usage domains whose words are no kind of anything for a prompt: slang, colloquialism,
# disparagement, ethnic slur ("gat" for a pistol, "max" for GHB)
_SLANG = {"07157273", "07075172", "06717170", "06718862"}

_LICENCE = """\
WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

This software and database is being provided to you, the LICENSEE, by Princeton University
under the following license.  By obtaining, using and/or copying this software and
database, you agree that you have read, understood, and will comply with these terms and
conditions.:

Permission to use, copy, modify and distribute this software and database and its
documentation for any purpose and without fee or royalty is hereby granted, provided that
you agree to comply with the following copyright notice and statements, including the
disclaimer, and that the same appear on ALL copies of the software, database and
documentation, including modifications that you make for internal use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO
REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION,
PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT- ABILITY OR FITNESS
FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR
DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER
RIGHTS.

The name of Princeton University or Princeton may not be used in advertising or publicity
pertaining to distribution of the software and/or database.  Title to copyright in this
software, database and any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same.
"""


def _lemma(raw: str) -> str:
    return raw.lower().replace("_", " ")


def _joined(lemma: str) -> str:
    return lemma.replace(" ", "").replace("-", "")


def _abbreviation(written: str) -> bool:
    """ "SAM", "U.S.", ".22", "LSD": initials and codes, which ordinary words collide with."""
    uppercase = sum(ch.isupper() for ch in written)
    return uppercase >= 2 or any(ch.isdigit() or ch == "." for ch in written)


def _plural_of_another(lemma: str, lemmas: Collection[str]) -> bool:
    """ "knuckles" (brass knuckles), "spirits", "bitters": also the plural of another word."""
    if not lemma.endswith("s") or lemma.endswith("ss"):
        return False
    return any(
        stem in lemmas for stem in (lemma[:-1], lemma[:-2], lemma[:-3] + "y") if len(stem) > 1
    )


def build(wordnet_dir: Path) -> str:
    """The table as text (see consent.matcher for how it is read)."""
    # every sense of every lemma: (lemma, pos, offset, sense number, tag count)
    senses: dict[str, list[tuple[int, bool, int, str]]] = defaultdict(list)
    first_noun: dict[str, tuple[int, str]] = {}
    for line in (wordnet_dir / "index.sense").read_text(encoding="utf-8").splitlines():
        key, offset, number, count = line.split()
        lemma, _, rest = key.partition("%")
        pos = _POS_BY_TYPE[rest[0]]
        lemma = _lemma(lemma)
        senses[lemma].append((int(count), pos == "n", -int(number), f"{pos}{offset}"))
        if pos == "n" and (lemma not in first_noun or int(number) < first_noun[lemma][0]):
            first_noun[lemma] = (int(number), offset)
    # a sense is a lemma's "strong" one when SemCor tagged it at least _STRONG times and
    # more often than any other sense of it, whatever the part of speech
    strong = {}
    for lemma, found in senses.items():
        count, _, _, where = max(found)
        others = sorted((c for c, _, _, w in found if w != where), reverse=True)
        if count >= _STRONG and (not others or count > others[0]):
            strong[lemma] = where
    root_of = {lemma: offset for lemma, (_, offset) in first_noun.items()}

    synsets: list[tuple[str, list[str], list[str], bool]] = []
    for line in (wordnet_dir / "data.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        offset, n_words = fields[0], int(fields[3], 16)
        written = [fields[4 + 2 * i] for i in range(n_words)]
        at = 4 + 2 * n_words
        pointers = [fields[at + 1 + 4 * i : at + 5 + 4 * i] for i in range(int(fields[at]))]
        hyponyms = [target for symbol, target, pos, _ in pointers if symbol == "~" and pos == "n"]
        slang = gloss.startswith("street name") or any(
            symbol == ";u" and target in _SLANG for symbol, target, _, _ in pointers
        )
        synsets.append((offset, written, hyponyms, slang))
    index = {offset: i for i, (offset, _, _, _) in enumerate(synsets)}

    lines = ["# synsets: lemmas, flagged (+ root, * strong, - never a kind); hyponyms"]
    for offset, written, hyponyms, slang in synsets:
        marked = []
        for raw in dict.fromkeys(written):
            lemma = _lemma(raw)
            flags = "+" if root_of.get(lemma) == offset else ""
            flags += "*" if strong.get(lemma) == f"n{offset}" else ""
            if slang or _abbreviation(raw) or _plural_of_another(lemma, senses):
                flags += "-"
            assert not any(ch in lemma for ch in "|\t") and lemma[0] not in "+*-"
            marked.append(flags + lemma)
        lines.append("|".join(marked) + "\t" + ",".join(str(index[h]) for h in hyponyms))
    lines.append("# senses: a lemma run together, its senses (all parts of speech) if more than 1")
    # counted by the word run together: "old fashioned" (a cocktail) is also "old-fashioned"
    by_joined: dict[str, int] = defaultdict(int)
    for lemma, found in senses.items():
        by_joined[_joined(lemma)] += len(found)
    lines.extend(f"{word}\t{n}" for word, n in by_joined.items() if n > 1)
    words = sorted({word for word in map(_joined, senses) if word.isalpha()})
    lines.append("# words")
    lines.extend(words)
    lines.append("# plurals: irregular plural, singular")
    for line in (wordnet_dir / "noun.exc").read_text(encoding="utf-8").splitlines():
        plural, singular = line.split()[:2]
        lines.append(f"{_lemma(plural)}\t{_lemma(singular)}")
    return "\n".join(lines) + "\n"


def _module(table: str) -> str:
    blob = base64.b64encode(lzma.compress(table.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    text = blob.decode("ascii")
    chunks = "\n".join(f'    "{text[i : i + 92]}"' for i in range(0, len(text), 92))
    licence = "\n".join(("    " + line).rstrip() for line in _LICENCE.splitlines())
    return (
        '"""Generated by `python -m consent.lexicon_build` from Princeton WordNet 3.0 (Debian\'s\n'
        "wordnet-base and wordnet-sense-index 1:3.0): do not edit. consent.matcher reads it.\n\n"
        "Its WordNet licence, which allows redistribution with this notice:\n\n"
        f"{licence}\n"
        '"""\n\n'
        f"TABLE_LZMA_B64 = (\n{chunks}\n)\n"
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0] if args else "/usr/share/wordnet")
    target = Path(args[1] if len(args) > 1 else Path(__file__).with_name("lexicon_data.py"))
    table = build(source)
    target.write_text(_module(table), encoding="utf-8")
    print(f"{target}: {len(table):,} characters of table, {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
