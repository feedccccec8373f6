"""Text folded for matching: the one normaliser ingest and the moderation checkpoints share.

People write around word lists: accents, capitals, digits for letters ("k1ll"), look-alike
letters from other scripts (a Cyrillic "i" in "kill"), invisible characters inside a word
(zero-width joiner, variation selectors), symbols for letters ("st@b", "n@zi"), letters
spaced or hyphenated apart ("k i l l", "ki-ll", "AR-15") and "I" for "l" ("kiII").
``match_tokens`` undoes all but the last and returns the words to match on;
``merge_look_alikes`` undoes the last, after a caller has taken suffixes off (so "whales"
still ends in "les"). The original text is kept for display only and never changed.
"""

from __future__ import annotations

import re
import unicodedata

# Cyrillic and Greek letters that look like Latin ones. Folded only inside a word that also
# has Latin letters, or in a text written mostly in Latin letters, so Russian or Greek
# prompts stay what they are (and are judged as other languages).
_CONFUSABLES = dict(
    # Lower case only: text is case-folded first.
    zip("авекмнорстухѕіјӏԁɡαβεικορτυχνζη", "abekmhopctyxsijldgabeikoptuxvzh", strict=True)
)
# Digits written for letters, inside a word.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
# Symbols written for letters, touching a letter: "st@b", "$ex", "k!ll".
_SYMBOLS = {"@": "a", "$": "s", "!": "i", "|": "i"}
_SYMBOL_IN_WORD = re.compile(r"[@$!|](?=\w)|(?<=\w)[@$!|]")
# Joiners between letters that people use to split a word: "ki-ll", "k.i.l.l", "k_i_l_l".
_JOINED = re.compile(r"(?<=\w)[-._'\u2019\u00b7*](?=\w)")
_WORD = re.compile(r"[^\W_]+")


def strip_invisible(text: str) -> str:
    """NFKC, without format characters (zero-width joiners, variation selectors, bidi
    marks) and combining accents."""
    text = unicodedata.normalize("NFKC", text)
    kept = [c for c in text if unicodedata.category(c) != "Cf" and not 0xFE00 <= ord(c) <= 0xFE0F]
    decomposed = unicodedata.normalize("NFKD", "".join(kept))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def is_latin_word(word: str) -> bool:
    return all(c.isascii() for c in word)


def match_tokens(text: str) -> list[str]:
    """The words of ``text`` as folded for matching (see the module docstring)."""
    plain = _JOINED.sub("", strip_invisible(text).casefold())
    plain = _SYMBOL_IN_WORD.sub(lambda m: _SYMBOLS[m.group()], plain)
    words = _WORD.findall(plain)
    latin_text = sum(map(is_latin_word, words)) * 2 >= len(words)
    folded = [_fold_word(w, latin_text) for w in words]
    return _join_spelled_out(folded)


def merge_look_alikes(word: str) -> str:
    """ "l" read as "i", so that "kiII" (capital I), "ki1l" and "kill" meet."""
    return word.replace("l", "i")


def _fold_word(word: str, latin_text: bool) -> str:
    if latin_text or any(c.isascii() and c.isalpha() for c in word):
        word = "".join(_CONFUSABLES.get(c, c) for c in word)
    return word.translate(_LEET) if word.isascii() else word


def _join_spelled_out(words: list[str]) -> list[str]:
    """Runs of one-letter words become one word: "k i l l" -> "kill"; "a g u n" keeps the
    article: "a", "gun"."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        if len(run) > 2 and run[0] in ("a", "i"):
            joined.append(run.pop(0))
        if run:
            joined.append("".join(run))
            run = []
        if word:
            joined.append(word)
    return joined
