"""How the prompt steers the animator: one vocabulary table, and the plan it yields.

``VOCABULARY`` maps each effect to the words and short phrases that ask for it, in several
languages; it is the only place that knows them (docs/animator.md lists it, ``alive run``
prints what a prompt selected). To teach the animator a word, add it to its effect's row.
Matching is on whole words and phrases, lower-cased, accents removed ("pluie", "Pluie" and
"PLUIE" match alike). A prompt that matches nothing gets the default motion: an eased camera
path across the photo, a breathing subject and, on a face, a natural blink.

This module imports nothing but the standard library and numpy, so tools can load it by path.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

# effect -> words and phrases (English, German, French, Spanish, Italian, Portuguese).
VOCABULARY: dict[str, tuple[str, ...]] = {
    # Camera
    "zoom_in": (
        "zoom", "zoom in", "zooming", "closer", "close up", "closeup", "push in", "dolly in",
        "heranzoomen", "naher", "rapprocher", "acercar", "acercamiento", "avvicinare",
        "aproximar",
    ),
    "zoom_out": (
        "zoom out", "zooming out", "pull back", "pull out", "wider", "widen", "rauszoomen",
        "dezoomer", "alejar", "allontanare", "afastar",
    ),
    "pan_left": ("pan left", "to the left", "nach links", "vers la gauche", "a la izquierda",
                 "a sinistra", "para a esquerda"),
    "pan_right": ("pan right", "to the right", "nach rechts", "vers la droite", "a la derecha",
                  "a destra", "para a direita"),
    # Atmosphere
    "rain": (
        "rain", "raining", "rainy", "rains", "drizzle", "downpour", "shower", "showers",
        "regen", "regnet", "pluie", "pleut", "pluvieux", "lluvia", "llueve", "lloviendo",
        "pioggia", "piove", "chuva", "chovendo",
    ),
    "snow": (
        "snow", "snowing", "snowy", "snowfall", "snowflakes", "flurries", "blizzard",
        "schnee", "schneit", "neige", "neiger", "nieve", "nevando", "neve", "nevicata",
        "nevando",
    ),
    "fog": (
        "fog", "foggy", "mist", "misty", "haze", "hazy", "nebel", "neblig", "dunst",
        "brouillard", "brume", "niebla", "neblina", "bruma", "nebbia", "foschia", "nevoeiro",
    ),
    "sunset": (
        "sunset", "sunrise", "golden hour", "golden", "dusk", "dawn", "warm", "warm light",
        "sonnenuntergang", "sonnenaufgang", "abendrot", "goldene stunde", "coucher de soleil",
        "lever de soleil", "heure doree", "atardecer", "puesta de sol", "amanecer",
        "hora dorada", "tramonto", "alba", "ora d oro", "por do sol", "entardecer",
        "nascer do sol",
    ),
    "night": (
        "night", "nighttime", "at night", "moonlight", "moonlit", "moon", "midnight",
        "nacht", "nachts", "mondschein", "nuit", "clair de lune", "noche", "luz de luna",
        "notte", "chiaro di luna", "noite", "luar",
    ),
    "clouds": (
        "cloud", "clouds", "cloudy", "overcast", "storm", "stormy", "sky", "skies",
        "wolken", "wolkig", "himmel", "nuage", "nuages", "nuageux", "ciel", "nube", "nubes",
        "nublado", "cielo", "nuvola", "nuvole", "nuvoloso", "nuvem", "nuvens", "ceu",
    ),
    "stars": (
        "stars", "star", "starry", "starry sky", "milky way", "sterne", "sternenhimmel",
        "etoiles", "etoile", "estrellas", "stelle", "estrelas",
    ),
    "sparkles": (
        "sparkle", "sparkles", "sparkling", "glitter", "glittering", "twinkle", "bokeh",
        "magic", "magical", "fairy", "glitzer", "funkeln", "magisch", "paillettes",
        "scintillant", "magique", "brillo", "destellos", "magia", "magico", "scintille",
        "brilho", "magica",
    ),
    "light_rays": (
        "light rays", "rays", "sunbeams", "sunbeam", "sun rays", "god rays", "beams",
        "sunshine", "sunny", "sun", "lichtstrahlen", "sonnenstrahlen", "sonne",
        "rayons de soleil", "rayons", "soleil", "rayos de sol", "rayos", "sol", "raggi di sole",
        "raggi", "raios de sol", "raios",
    ),
    "water": (
        "water", "waves", "wave", "ripples", "ripple", "sea", "ocean", "lake", "river", "pond",
        "wasser", "wellen", "meer", "fluss", "eau", "vagues", "mer", "lac", "riviere",
        "agua", "olas", "mar", "lago", "rio", "acqua", "fiume", "ondas",
    ),
    "wind": (
        "wind", "windy", "breeze", "breezy", "blowing", "gust", "gusty", "sway", "swaying",
        "leaves", "hair blowing", "windig", "brise", "vent", "venteux", "viento", "brisa",
        "vento", "ventoso", "venteando",
    ),
    # The subject
    "blink": ("blink", "blinking", "blinks", "blinzeln", "cligner", "parpadear", "sbattere",
              "piscar"),
    "wink": ("wink", "winking", "winks", "zwinkern", "zwinkert", "clin d oeil", "guino",
             "guinar", "occhiolino", "piscadela", "piscar o olho"),
    "smile": ("smile", "smiling", "smiles", "grin", "happy", "lacheln", "lachelt", "sourire",
              "sourit", "sonrisa", "sonreir", "sonrie", "sorriso", "sorridere", "sorrir"),
    "head_tilt": (
        "tilt", "tilts", "tilting", "nod", "nodding", "turn head", "head turn", "look around",
        "kopf neigen", "nicken", "pencher la tete", "inclinar la cabeza", "asentir",
        "inclinare la testa", "inclinar a cabeca",
    ),
    "breathe": ("breathe", "breathing", "alive", "atmen", "lebendig", "respirer", "vivant",
                "respirar", "vivo", "respirare", "viva"),
    # Energy
    "calm": (
        "calm", "gentle", "gently", "slow", "slowly", "still", "peaceful", "serene", "quiet",
        "subtle", "ruhig", "sanft", "langsam", "calme", "doux", "lent", "tranquilo", "suave",
        "lento", "calmo", "tranquillo", "dolce",
    ),
    "lively": ("fast", "dramatic", "dynamic", "epic", "energetic", "lively", "schnell",
               "dramatisch", "rapide", "dramatique", "rapido", "dramatico", "veloce"),
}  # fmt: skip


def _normalised(text: str) -> str:
    """Lower case, accents removed, anything but letters and digits a single space, padded."""
    plain = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return " " + " ".join(re.findall(r"[a-z0-9]+", plain)) + " "


# Longest phrases first: a phrase's words are used up by it ("coucher de soleil" is a sunset,
# not also the sun's rays).
_PHRASES = sorted(
    ((_normalised(phrase), effect) for effect, phrases in VOCABULARY.items() for phrase in phrases),
    key=lambda item: -len(item[0]),
)


def select_effects(prompt: str) -> tuple[str, ...]:
    """The effects the prompt's words and phrases ask for, in the table's order."""
    text = _normalised(prompt)
    found = set()
    for phrase, effect in _PHRASES:
        if phrase in text:
            found.add(effect)
            text = text.replace(phrase, " | ")
    return tuple(effect for effect in VOCABULARY if effect in found)


def describe(prompt: str) -> str:
    """One line for people: the effects a prompt selected, or that it gets the default."""
    chosen = select_effects(prompt)
    named = ", ".join(e.replace("_", " ") for e in chosen) if chosen else "default motion"
    return f"{named} (always: eased camera, breathing subject, blinking faces)"


def markdown_table() -> str:
    """The vocabulary as docs/animator.md shows it (a test keeps the page current)."""
    rows = ["| effect | words and phrases |", "|---|---|"]
    rows += [f"| `{effect}` | {', '.join(phrases)} |" for effect, phrases in VOCABULARY.items()]
    return "\n".join(rows)


@dataclass(frozen=True)
class Plan:
    """What moves and how much. Sizes are fractions of the frame, times are in seconds."""

    effects: frozenset[str]
    travel_s: float  # the camera's eased move takes this long, then holds
    pan: tuple[float, float]  # direction of travel across the photo, unit-ish
    pan_reach: float  # 0..1 of the room the photo leaves the camera
    zoom: tuple[float, float]  # camera zoom at the start and the end (1 = the photo fills)
    parallax: float  # subject vs background shift, fraction of the frame width
    breathe: float  # subject's vertical swell, fraction of its height
    sway: float  # subject's sideways sway, fraction of the frame width
    grade: str  # "", "sunset" or "night"
    clouds: float  # opacity of the drifting clouds over the sky
    cloud_speed: float  # frame widths per second (sign: direction)
    rain: float  # 0..1 density
    snow: float
    fog: float
    stars: float
    sparkles: float
    rays: float
    ripple: float  # water ripple amplitude, fraction of the frame height
    wind: float  # foliage sway amplitude, fraction of the frame width
    blink_every_s: float  # natural blinks (faces)
    wink: bool
    smile: float  # 0..1
    tilt_deg: float  # head tilt amplitude
    phase: float  # seed-chosen offset of every oscillation
    noise_seed: int  # clouds, fog, particles


def plan_motion(prompt: str, seed: int) -> Plan:
    """The plan for one video: the seed picks pleasant values, the prompt's words steer them."""
    # Every random number is drawn first, in a fixed order, so words never shift the sequence.
    rng = np.random.default_rng(seed % 2**64)
    side = float(rng.choice([-1.0, 1.0]))
    travel_s = rng.uniform(3.5, 5.0)
    pan = (side, rng.uniform(-0.3, 0.3))
    zoom_end = rng.uniform(1.04, 1.09)
    parallax = rng.uniform(0.008, 0.012)
    phase = rng.uniform(0.0, 2 * math.pi)
    blink_every_s = rng.uniform(2.6, 3.6)
    cloud_speed = side * rng.uniform(0.012, 0.02)
    noise_seed = int(rng.integers(2**63))

    effects = frozenset(select_effects(prompt))
    zoom = (1.0, zoom_end)
    pan_reach = 0.22
    if "zoom_in" in effects:
        zoom, pan_reach = (1.0, zoom_end + 0.1), 0.25
    if "zoom_out" in effects:
        zoom, pan_reach = (zoom_end + 0.1, 1.0), 0.25
    sides = ("pan_right" in effects) - ("pan_left" in effects)
    if sides:
        # "Pan left" turns the camera left: the content moves right.
        pan, pan_reach = (float(sides), 0.0), 0.8
    grade = "night" if "night" in effects else "sunset" if "sunset" in effects else ""
    energy = 0.6 if "calm" in effects else 1.5 if "lively" in effects else 1.0
    has = effects.__contains__
    return Plan(
        effects=effects,
        travel_s=travel_s / energy,
        pan=pan,
        pan_reach=min(1.0, pan_reach * energy),
        zoom=zoom,
        parallax=parallax * energy,
        breathe=0.006 * energy * (1.6 if has("breathe") else 1.0),
        sway=0.003 * energy * (2.0 if has("wind") else 1.0),
        grade=grade,
        clouds=0.75 if has("clouds") else 0.3,
        cloud_speed=cloud_speed * energy * (1.8 if has("wind") else 1.0),
        rain=1.0 * energy if has("rain") else 0.0,
        snow=1.0 * energy if has("snow") else 0.0,
        fog=0.7 if has("fog") else 0.0,
        stars=1.0 if has("stars") or grade == "night" else 0.0,
        sparkles=1.0 if has("sparkles") else 0.0,
        rays=1.0 if has("light_rays") or (grade == "sunset" and not has("rain")) else 0.0,
        ripple=0.004 * energy if has("water") else 0.0015 * energy,
        wind=0.008 * energy if has("wind") else 0.0012 * energy,
        blink_every_s=blink_every_s / energy,
        wink=has("wink"),
        smile=1.0 if has("smile") else 0.0,
        tilt_deg=3.0 * energy if has("head_tilt") else 0.8 * energy,
        phase=phase,
        noise_seed=noise_seed,
    )
