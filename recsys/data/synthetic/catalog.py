"""Names the synthetic data set draws from: genres and their title words, factor poles,
MovieLens-like demographics (age groups, genders, occupations)."""

from __future__ import annotations

from typing import Final

import numpy as np

_GENRE_TITLE_WORDS: Final = {
    "Drama": "Silence Letters Winter Promise Brothers Daughter Harbor Mercy",
    "Comedy": "Wedding Pickle Roommates Vacation Neighbors Blunder Mixup Shenanigans",
    "Action": "Bullet Fury Strike Vengeance Protocol Firepower Showdown Rampage",
    "Thriller": "Conspiracy Witness Pursuit Deadline Hostage Paranoia Trap Stranger",
    "Romance": "Kiss Heart Summer Love Paris Valentine Sweetheart Embrace",
    "Adventure": "Quest Treasure Island Expedition Voyage Jungle Map Compass",
    "Crime": "Heist Mob Gangster Detective Alibi Racket Smuggler Verdict",
    "Sci-Fi": "Galaxy Android Starship Quantum Asteroid Cyborg Orbit Colony",
    "Horror": "Blood Haunting Scream Grave Curse Possession Nightmare Crypt",
    "Children": "Puppy Bunny Birthday Toybox Dragonfly Lollipop Playground Teddy",
    "War": "Battalion Trenches Platoon Frontline Battle Sniper Submarine Armistice",
    "Mystery": "Clue Riddle Secret Enigma Puzzle Cipher Manor Disappearance",
    "Musical": "Melody Song Dance Rhythm Chorus Broadway Overture Ballet",
    "Animation": "Cartoon Toon Sketch Pixel Robot Kingdom Critter Doodle",
    "Fantasy": "Wizard Dragon Sorcerer Elf Enchantment Spell Realm Prophecy",
    "Western": "Outlaw Saloon Sheriff Rodeo Frontier Canyon Stagecoach Gunslinger",
    "Film-Noir": "Shadow Dame Fog Midnight Cigarette Rain Nightclub Double-Cross",
    "Documentary": "Planet Truth Story Inside Portrait Archive Chronicle Journey",
}
"""Named genres, commonest first (MovieLens 100K order of frequency, roughly), and their title
words; no word belongs to two genres."""

GENRE_WORDS: Final = {genre: tuple(words.split()) for genre, words in _GENRE_TITLE_WORDS.items()}
"""Title words per named genre."""
GENRE_NAMES: Final = tuple(GENRE_WORDS)
"""Named genres, commonest first."""
WORDS_PER_GENRE: Final = 8

FACTOR_POLES: Final = (
    ("gritty", "whimsical"),
    ("slow-burn", "fast-paced"),
    ("cerebral", "visceral"),
    ("dark", "uplifting"),
    ("epic", "intimate"),
    ("classic", "modern"),
    ("realistic", "surreal"),
    ("violent", "gentle"),
    ("satirical", "earnest"),
    ("quirky", "conventional"),
    ("stylish", "raw"),
    ("ensemble", "solo"),
    ("urban", "rural"),
    ("nostalgic", "futuristic"),
    ("tense", "relaxed"),
    ("bleak", "hopeful"),
)
"""(negative, positive) tag of latent dimension f; ``factor17-low``... beyond 16."""

TOKEN_CONSONANTS: Final = "bdgklmnprstvz"
TOKEN_VOWELS: Final = "aeiou"
TOKEN_MIN_SYLLABLES: Final = 3

AGE_GROUPS: Final = ((7, 17), (18, 24), (25, 34), (35, 44), (45, 49), (50, 55), (56, 73))
AGE_GROUP_P: Final = (0.037, 0.183, 0.347, 0.198, 0.091, 0.082, 0.062)
"""MovieLens 1M's shares of its age groups."""
GENDERS: Final = ("M", "F")
GENDER_P: Final = (0.71, 0.29)
OCCUPATIONS: Final = (
    ("student", 0.210),
    ("other", 0.112),
    ("educator", 0.101),
    ("administrator", 0.084),
    ("engineer", 0.071),
    ("programmer", 0.070),
    ("librarian", 0.054),
    ("writer", 0.048),
    ("executive", 0.034),
    ("scientist", 0.033),
    ("artist", 0.030),
    ("technician", 0.029),
    ("marketing", 0.028),
    ("entertainment", 0.019),
    ("healthcare", 0.017),
    ("retired", 0.015),
    ("lawyer", 0.013),
    ("salesman", 0.013),
    ("none", 0.010),
    ("homemaker", 0.008),
    ("doctor", 0.007),
)


def genre_names(n: int) -> tuple[str, ...]:
    return tuple(GENRE_NAMES[g] if g < len(GENRE_NAMES) else f"Genre{g + 1}" for g in range(n))


def genre_words(n: int) -> np.ndarray:
    rows = [
        GENRE_WORDS[name]
        if name in GENRE_WORDS
        else tuple(f"{name}Word{j + 1}" for j in range(WORDS_PER_GENRE))
        for name in genre_names(n)
    ]
    return np.array(rows, dtype=object)


def factor_poles(n: int) -> list[tuple[str, str]]:
    return [
        FACTOR_POLES[f] if f < len(FACTOR_POLES) else (f"factor{f + 1}-low", f"factor{f + 1}-high")
        for f in range(n)
    ]
