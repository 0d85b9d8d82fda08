"""The mood vocabulary feeds filter by, and a keyword guess when a creator gives none."""

from __future__ import annotations

import re

from errors import BadUserInput

__all__ = ["MOODS", "infer_moods", "normalize_moods"]

MAX_MOODS = 3

# mood -> prompt words that suggest it
MOODS: dict[str, tuple[str, ...]] = {
    "funny": ("funny", "silly", "joke", "comedy", "prank", "laugh", "goofy", "meme"),
    "relaxing": ("calm", "relax", "peaceful", "cozy", "gentle", "rain", "sunset", "lofi"),
    "animals": ("cat", "dog", "puppy", "kitten", "bird", "horse", "animal", "fox", "panda"),
    "action": ("chase", "explosion", "fight", "race", "stunt", "battle", "jump"),
    "romantic": ("love", "kiss", "romantic", "date", "wedding"),
    "scary": ("horror", "ghost", "scary", "haunted", "zombie", "monster"),
    "inspiring": ("inspiring", "dream", "triumph", "hero", "victory"),
    "nature": ("forest", "ocean", "mountain", "river", "beach", "flower", "nature"),
    "food": ("food", "cook", "pizza", "cake", "coffee", "kitchen", "burger"),
    "music": ("music", "song", "dance", "concert", "guitar", "sing"),
    "sports": ("soccer", "football", "basketball", "tennis", "skate", "surf", "sport"),
    "art": ("painting", "sculpture", "art", "anime", "watercolor", "pixel"),
    "travel": ("city", "travel", "street", "train", "airport", "tokyo", "paris"),
    "scifi": ("robot", "space", "alien", "future", "cyberpunk", "spaceship"),
    "gaming": ("game", "gaming", "minecraft", "arcade", "boss"),
}
_WORD = re.compile(r"[a-z]+")


def normalize_moods(moods: list[str]) -> list[str]:
    """Lower-case, de-duplicated, known moods; BAD_USER_INPUT for anything else."""
    result: list[str] = []
    for mood in moods:
        key = mood.strip().lower()
        if key not in MOODS:
            known = ", ".join(sorted(MOODS))
            raise BadUserInput(f"unknown mood {mood[:40]!r}; known moods: {known}")
        if key not in result:
            result.append(key)
    if len(result) > MAX_MOODS:
        raise BadUserInput(f"a clip has at most {MAX_MOODS} moods")
    return result


def infer_moods(prompt: str) -> list[str]:
    words = set(_WORD.findall(prompt.lower()))
    stems = {w.rstrip("s") for w in words} | words
    found = [mood for mood, cues in MOODS.items() if stems.intersection(cues)]
    return found[:MAX_MOODS]
