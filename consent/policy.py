"""Cameo owners' restrictions against prompts, read through consent.matcher.

A restriction is a sentence such as "no political content" or "no clowns or spiders". It is
read as a negation ("no", "nothing", "never", "avoid", "without", "not"; optional) followed
by topics, split on commas, "or", "and" and slashes:

- a topic that names a known category ("political content", "politics", "violence",
  "alcohol", "romance", "nudity", "drugs", "gambling", "smoking") blocks prompts holding any
  word or phrase of that category's list, or any kind WordNet lists below a few chosen
  words of it (`KINDS_OF`: "bourbon" and "sake" below "alcohol", "rifle" below "weapon");
- any other topic blocks prompts holding that topic's words, in that order, and the kinds
  WordNet lists below it ("tarantula" for "no spiders").

consent.matcher does the reading, for rules and prompts alike: case, accents, look-alike
letters from other scripts (a Cyrillic "s"), leetspeak ("5p1d3r", "$pider"), letters pulled
apart ("s-p-i-d-e-r", "s p i d e r", "spi der"), plurals, and compounds that start with a
topic ("spiderman") do not slip past; whole dictionary words that merely start or end the
same ("spiderwort", "swine", "concatenate") are not caught.

This is a word list, not a classifier: a paraphrase ("a man holding a pint") passes the
"no alcohol" rule. Owners keep the final say through per-draft approval.

Public figures (graph.public_figures, kept by `reelgraph policy public-figure`): a prompt that
names a registered person, by name or alias, read by the same matcher (but names are names:
no WordNet kinds), is refused unless that person's own account's cameo is featured in the
clip with consent. The compiled registry is kept per process and read again only when the
registry's stamp in the graph moved on (any process's add or remove).

Rights holders' works (graph.rights_holders, kept by rights holders through GraphQL): a prompt
that uses a registered work, character or mark, by name or alias, read by the same matcher
(names: no WordNet kinds), is refused (rule "rights-holder") unless its author holds the
entry, or the holder licensed it to them or to everyone. A remix is checked against the
remixed clip's prompt too, with the remixer's licences: a licence is personal, so the parent
author's does not pass on. The names are compiled per process like the public figures';
licences are read from the graph whenever a prompt uses an entry, so a grant or revocation
counts from the very next prompt. The message names the kind of rule, never the entry, its
holder or the list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from consent.matcher import Term, TermMatcher, fold, lexicon, words_of
from errors import PolicyViolation
from graph import public_figures as figure_repo
from graph import rights_holders as work_repo
from graph.driver import GraphDriver

__all__ = [
    "CATEGORIES",
    "KINDS_OF",
    "PUBLIC_FIGURE_RULE",
    "RIGHTS_HOLDER_RULE",
    "ProtectedWorks",
    "PublicFigures",
    "Rule",
    "check_prompt",
    "enforce_public_figures",
    "enforce_restrictions",
    "enforce_rights_holders",
    "figure_key",
    "normalize_figure",
    "normalize_words",
    "parse_rule",
    "protected_works",
    "public_figures",
    "work_key",
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
            "marriage proposal", "propose marriage", "flirt", "flirting", "cuddle", "cuddling",
            "honeymoon", "valentine", "makeout", "make out", "sweetheart",
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

# per category, the words whose WordNet kinds it blocks too, chosen by hand: "drug" itself is
# left out (its kinds are every medicine), and so is "attack" (a volley, a raid)
KINDS_OF: dict[str, tuple[str, ...]] = {
    "politics": ("politician", "election", "political party"),
    "violence": ("violence", "weapon", "murder", "bomb", "war", "fight"),
    "alcohol": ("alcohol",),
    "romance": ("love", "kiss"),
    "nudity": ("nudity", "sexual intercourse", "oral sex", "masturbation", "pornography"),
    "drugs": ("narcotic", "controlled substance", "hallucinogen", "hard drug", "soft drug"),
    "gambling": ("gambling",),
    "smoking": ("tobacco",),
}

_NEGATIONS = ("no", "nothing", "never", "avoid", "without", "not", "dont", "don't")
# words that only say "of that kind": "no violent content" means "no violence"
_FILLER = frozenset({"content", "topic", "theme", "scene", "stuff", "reference", "kind", "any"})
_SPLIT = re.compile(r",|/|;|\bor\b|\band\b|\bnor\b")


def normalize_words(text: str) -> list[str]:
    """The text's words as rules and prompts are both read (consent.matcher.words_of), each
    reduced to its singular where it is a plural: "Two Cats" -> ["two", "cat"]."""
    return [_singular(word) for word in words_of(text)]


def _singular(word: str) -> str:
    lex = lexicon()
    return min((form for form in lex.forms(word) if lex.is_word(form)), key=len, default=word)


@cache
def _category_by_name() -> dict[tuple[str, ...], str]:
    by_name: dict[tuple[str, ...], str] = {}
    for key, (names, _) in CATEGORIES.items():
        for name in names:
            by_name[tuple(normalize_words(name))] = key
    return by_name


@dataclass(frozen=True)
class Rule:
    """One restriction as read: the owner's text, the word sequences it blocks, and those
    whose WordNet kinds it blocks too."""

    text: str
    phrases: tuple[tuple[str, ...], ...]
    kinds_of: tuple[tuple[str, ...], ...] = ()


def parse_rule(text: str) -> Rule:
    """Read one restriction; a rule with no words blocks nothing."""
    folded = fold(text).strip()
    for negation in _NEGATIONS:
        if folded == negation:
            return Rule(text, ())
        if folded.startswith(negation + " "):
            folded = folded[len(negation) + 1 :]
            break
    phrases: list[tuple[str, ...]] = []
    kinds_of: list[tuple[str, ...]] = []
    for part in _SPLIT.split(folded):
        words = tuple(words_of(part))
        if not words:
            continue
        kept = tuple(w for w in words if _singular(w) not in _FILLER) or words
        by_name = _category_by_name()
        category = by_name.get(tuple(map(_singular, words))) or by_name.get(
            tuple(map(_singular, kept))
        )
        if category is not None:
            phrases.extend(tuple(words_of(item)) for item in CATEGORIES[category][1])
            kinds_of.extend(tuple(words_of(root)) for root in KINDS_OF[category])
            continue
        phrases.append(kept)
        kinds_of.append(kept)
    return Rule(text, tuple(dict.fromkeys(phrases)), tuple(dict.fromkeys(kinds_of)))


@lru_cache(maxsize=256)
def _matcher(restrictions: tuple[str, ...]) -> TermMatcher[int]:
    """The rules compiled; each label is the rule's index. Owners change rules rarely and
    many prompts meet the same ones, so compiled sets are kept."""
    terms: list[Term[int]] = []
    for index, text in enumerate(restrictions):
        rule = parse_rule(text)
        terms.extend(Term(index, " ".join(phrase)) for phrase in rule.phrases)
        terms.extend(
            Term(index, " ".join(root), narrower=True, compounds=False) for root in rule.kinds_of
        )
    return TermMatcher(terms)


def check_prompt(prompt: str, restrictions: Iterable[str]) -> str | None:
    """The first restriction the prompt breaks, as the owner wrote it; None if it breaks none."""
    rules = tuple(restrictions)
    if not rules:
        return None
    broken = _matcher(rules).find(prompt)
    return None if broken is None else rules[broken]


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


# --- public figures -----------------------------------------------------------------------

PUBLIC_FIGURE_RULE = "public-figure"


def figure_key(name: str) -> str:
    """A name as the matcher reads it: its folded words, one space apart ("" for none)."""
    return " ".join(words_of(name))


def normalize_figure(name: str, aliases: Iterable[str]) -> tuple[str, list[str]]:
    """A public figure's name and aliases as registered (the CLI and the admin API alike):
    runs of white space made one space; aliases without letters or digits, and repeats, left
    out. The caller refuses a name whose `figure_key` is empty."""
    kept = (" ".join(alias.split()) for alias in aliases)
    return " ".join(name.split()), list(dict.fromkeys(a for a in kept if figure_key(a)))


@dataclass(frozen=True)
class PublicFigures:
    """The registry as of one stamp, compiled: each term's label is the entry's id."""

    version: str
    matcher: TermMatcher[str]
    user_of: dict[str, str | None]  # entry id -> the linked account's id

    @classmethod
    def compile(cls, version: str, figures: Iterable[dict]) -> PublicFigures:
        terms: list[Term[str]] = []
        user_of: dict[str, str | None] = {}
        for figure in figures:
            user_of[figure["id"]] = figure.get("userId")
            for text in (figure["name"], *(figure.get("aliases") or ())):
                terms.append(Term(figure["id"], text))  # names: no WordNet kinds
        return cls(version, TermMatcher(terms), user_of)

    def named(self, prompt: str, featured_owner_ids: Iterable[str] = ()) -> list[str]:
        """The ids of the entries the prompt names, less those whose own account owns a
        cameo in `featured_owner_ids` (featured with consent)."""
        exempt = set(featured_owner_ids)
        return [
            figure_id
            for figure_id in self.matcher.find_all(prompt)
            if self.user_of.get(figure_id) is None or self.user_of[figure_id] not in exempt
        ]


_compiled: PublicFigures | None = None  # this process's, as of the last stamp read


async def public_figures(db: GraphDriver) -> PublicFigures:
    """The registry, compiled; one read of the graph, which sends the entries only when
    the registry changed since this process last compiled it."""
    global _compiled
    known = _compiled
    version, figures = await figure_repo.figures_since(db, None if known is None else known.version)
    if figures is None and known is not None:
        return known
    compiled = PublicFigures.compile(version, figures or [])
    _compiled = compiled
    return compiled


async def enforce_public_figures(
    db: GraphDriver,
    prompt: str,
    featured_owner_ids: Iterable[str],
    *,
    parent_prompt: str | None = None,
    author_id: str | None = None,
) -> None:
    """POLICY_VIOLATION (extensions.rule "public-figure") when the prompt, or the prompt of
    the clip remixed, names a registered public figure whose own cameo is not among the
    featured ones (`featured_owner_ids`: the owners of cameos that passed the consent
    checks). The message names the kind of rule only: never the person or the list.

    Then the rights holders' rule (`enforce_rights_holders`, for `author_id`): createClip
    runs every registry check through this one call."""
    owners = set(featured_owner_ids)
    registry = await public_figures(db)
    if registry.named(prompt, owners):
        raise PolicyViolation(
            "the prompt names a public figure; feature their own cameo with their consent, "
            "or change the prompt",
            rule=PUBLIC_FIGURE_RULE,
        )
    if parent_prompt is not None and registry.named(parent_prompt, owners):
        raise PolicyViolation(
            "the prompt of the clip remixed names a public figure; feature their own cameo "
            "with their consent, or remix another clip",
            rule=PUBLIC_FIGURE_RULE,
        )
    await enforce_rights_holders(db, prompt, author_id, parent_prompt=parent_prompt)


# --- rights holders' works ------------------------------------------------------------------

RIGHTS_HOLDER_RULE = "rights-holder"


def work_key(text: str) -> str:
    """A work's name or alias as duplicates are found: its folded letters and digits run
    together ("Star-Wars", "star wars" and "StarWars" are one key; "" for none)."""
    return "".join(words_of(text))


@dataclass(frozen=True)
class ProtectedWorks:
    """The registered entries as of one stamp, compiled: each term's label is the entry's id."""

    version: str
    matcher: TermMatcher[str]

    @classmethod
    def compile(cls, version: str, works: Iterable[dict]) -> ProtectedWorks:
        terms = [
            Term(work["id"], text)  # names: no WordNet kinds
            for work in works
            for text in (work["name"], *(work.get("aliases") or ()))
        ]
        return cls(version, TermMatcher(terms))

    def used(self, prompt: str) -> list[str]:
        """The ids of the entries the prompt uses, by name or alias."""
        return self.matcher.find_all(prompt)


_compiled_works: ProtectedWorks | None = None  # this process's, as of the last stamp read


async def protected_works(db: GraphDriver) -> ProtectedWorks:
    """The entries, compiled; one read of the graph, which sends the entries only when they
    changed since this process last compiled them."""
    global _compiled_works
    known = _compiled_works
    version, works = await work_repo.works_since(db, None if known is None else known.version)
    if works is None and known is not None:
        return known
    compiled = ProtectedWorks.compile(version, works or [])
    _compiled_works = compiled
    return compiled


async def enforce_rights_holders(
    db: GraphDriver, prompt: str, author_id: str | None, *, parent_prompt: str | None = None
) -> None:
    """POLICY_VIOLATION (extensions.rule "rights-holder") when the prompt, or the prompt of
    the clip remixed, uses a registered entry that `author_id` neither holds nor is licensed
    to use (by name or as everyone); `author_id` None: no author's licence counts."""
    registry = await protected_works(db)
    for text, remixed in ((prompt, False), (parent_prompt, True)):
        used = registry.used(text) if text is not None else []
        if used and await work_repo.blocking_works(db, used, author_id):
            if remixed:
                raise PolicyViolation(
                    "the prompt of the clip remixed uses a protected work that its rights "
                    "holder has not licensed to you; remix another clip",
                    rule=RIGHTS_HOLDER_RULE,
                )
            raise PolicyViolation(
                "the prompt uses a protected work that its rights holder has not licensed "
                "to you; change the prompt",
                rule=RIGHTS_HOLDER_RULE,
            )
