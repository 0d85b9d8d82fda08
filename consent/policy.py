"""Cameo owners' restrictions against prompts: a small, documented word matcher.

A restriction is a sentence such as "no political content" or "no clowns or spiders". It is
read as a negation ("no", "nothing", "never", "avoid", "without", "not"; optional) followed
by topics, split on commas, "or", "and" and slashes:

- a topic that names a known category ("political content", "politics", "violence",
  "alcohol", "romance", "nudity", "drugs", "gambling", "smoking") blocks prompts holding any
  word or phrase of that category's list;
- any other topic blocks prompts holding that topic's words, in that order.

Both sides are normalised the same way (Unicode NFKC, case folded, accents and invisible
characters dropped, a light plural/possessive stem), and matching is by whole words: the
rule "no cats" blocks "two cats dancing" and "a cat's dream" but not "concatenate".

This is a word list, not a classifier: a paraphrase ("a man holding a pint") passes the
"no alcohol" rule. Owners keep the final say through per-draft approval.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from errors import PolicyViolation

__all__ = [
    "CATEGORIES",
    "Rule",
    "check_prompt",
    "enforce_restrictions",
    "normalize_words",
    "parse_rule",
]

# each category: the names a rule may call it by, and the words/phrases it blocks
CATEGORIES: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "politics": (
        frozenset({"politics", "political", "political content", "political topics"}),
        (
            "politics", "political", "politician", "election", "vote", "voting", "voter",
            "ballot", "campaign", "candidate", "president", "presidential", "senator",
            "congress", "parliament", "government", "prime minister", "democrat",
            "republican", "protest", "propaganda", "referendum", "minister", "mayor",
            "governor", "political party",
        ),
    ),
    "violence": (
        frozenset({"violence", "violent", "violent content", "gore", "fighting", "weapons"}),
        (
            "violence", "violent", "fight", "fighting", "punch", "kill", "killing",
            "murder", "gun", "shooting", "stab", "stabbing", "blood", "bloody",
            "gore", "weapon", "war", "attack", "assault", "explosion", "explode", "bomb",
            "knife", "sword", "beat up", "torture", "fistfight", "brawl", "massacre",
            "strangle", "behead", "riot",
        ),
    ),
    "alcohol": (
        frozenset({"alcohol", "alcoholic", "drinking", "booze", "alcohol content"}),
        (
            "alcohol", "alcoholic", "beer", "wine", "vodka", "whiskey", "whisky", "rum",
            "gin", "tequila", "cocktail", "champagne", "drunk", "drunken", "booze",
            "liquor", "hangover", "pub crawl", "bartender", "brewery", "margarita",
            "cider", "ale", "lager", "martini", "tipsy",
        ),
    ),
    "romance": (
        frozenset({"romance", "romantic", "romantic content", "love", "dating"}),
        (
            "romance", "romantic", "kiss", "kissing", "on a date", "dating", "love", "lover",
            "in love", "boyfriend", "girlfriend", "wedding", "marry", "married", "marriage",
            "proposal", "propose", "flirt", "flirting", "cuddle", "cuddling", "honeymoon",
            "valentine", "makeout", "make out", "sweetheart",
        ),
    ),
    "nudity": (
        frozenset({"nudity", "nude", "sexual", "sexual content", "sex", "nsfw", "explicit"}),
        (
            "nude", "nudity", "naked", "topless", "sex", "sexual", "sexy", "erotic",
            "lingerie", "nsfw", "explicit", "porn", "pornographic", "stripper",
        ),
    ),
    "drugs": (
        frozenset({"drugs", "drug", "drug use", "narcotics"}),
        (
            "drug", "narcotic", "cocaine", "heroin", "meth", "marijuana", "weed", "cannabis",
            "ecstasy", "lsd", "overdose", "high on", "stoned",
        ),
    ),
    "gambling": (
        frozenset({"gambling", "betting", "casino"}),
        ("gambling", "gamble", "casino", "betting", "poker", "slot machine", "roulette"),
    ),
    "smoking": (
        frozenset({"smoking", "tobacco", "cigarettes", "vaping"}),
        ("smoke", "smoking", "cigarette", "cigar", "tobacco", "vape", "vaping", "pipe smoking"),
    ),
}  # fmt: skip

_NEGATIONS = ("no", "nothing", "never", "avoid", "without", "not", "dont", "don't")
# words that only say "of that kind": "no violent content" means "no violence"
_FILLER = frozenset({"content", "topic", "theme", "scene", "stuff", "reference", "kind", "any"})
_SPLIT = re.compile(r",|/|;|\bor\b|\band\b|\bnor\b")
_WORD = re.compile(r"\w+")
# zero-width and other format characters a prompt could hide inside a word to slip past
_INVISIBLE = {"Cf", "Mn", "Me"}


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) not in _INVISIBLE)


def _stem(word: str) -> str:
    """A light stem so singular and plural, and possessives, meet: cats, cat's -> cat."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes")) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def normalize_words(text: str) -> list[str]:
    """The text's words, normalised and stemmed as rules and prompts are both read."""
    folded = _fold(text).replace("'s", "").replace("\u2019s", "").replace("'", "")
    return [_stem(w) for w in _WORD.findall(folded)]


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(normalize_words(text))


_CATEGORY_BY_NAME = {_phrase(name): key for key, (names, _) in CATEGORIES.items() for name in names}
_CATEGORY_PHRASES = {
    key: tuple(_phrase(item) for item in items) for key, (_, items) in CATEGORIES.items()
}


@dataclass(frozen=True)
class Rule:
    """One restriction as read: the owner's text and the word sequences it blocks."""

    text: str
    phrases: tuple[tuple[str, ...], ...]


def parse_rule(text: str) -> Rule:
    """Read one restriction; a rule with no words blocks nothing."""
    folded = _fold(text).strip()
    for negation in _NEGATIONS:
        if folded == negation:
            return Rule(text, ())
        if folded.startswith(negation + " "):
            folded = folded[len(negation) + 1 :]
            break
    phrases: list[tuple[str, ...]] = []
    for part in _SPLIT.split(folded):
        words = _phrase(part)
        if not words:
            continue
        category = _CATEGORY_BY_NAME.get(words) or _CATEGORY_BY_NAME.get(
            tuple(w for w in words if w not in _FILLER)
        )
        if category is not None:
            phrases.extend(_CATEGORY_PHRASES[category])
            continue
        kept = tuple(w for w in words if w not in _FILLER) or words
        phrases.append(kept)
    return Rule(text, tuple(dict.fromkeys(phrases)))


def _contains(words: Sequence[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1))


def check_prompt(prompt: str, restrictions: Iterable[str]) -> str | None:
    """The first restriction the prompt breaks, as the owner wrote it; None if it breaks none."""
    words = normalize_words(prompt)
    for text in restrictions:
        rule = parse_rule(text)
        if any(_contains(words, phrase) for phrase in rule.phrases):
            return rule.text
    return None


def enforce_restrictions(prompt: str, restrictions: Iterable[str]) -> None:
    """POLICY_VIOLATION naming the broken rule. The message names the rule only: not the
    word that matched, the owner, or the owner's other rules."""
    broken = check_prompt(prompt, restrictions)
    if broken is not None:
        raise PolicyViolation(
            f'the prompt breaks a featured cameo owner\'s rule "{broken}"; '
            "change the prompt or leave that cameo out",
            rule=broken,
        )
