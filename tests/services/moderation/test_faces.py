"""Faces and apparent age with the real models (OpenCV's cascade, dlib-models' age network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alive.stage import TransientError
from services.moderation.faces import FaceAges

PHOTOS = Path(__file__).parents[2] / "data" / "moderation" / "photos"


@pytest.fixture(scope="module")
def models() -> FaceAges:
    faces = FaceAges(min_face_fraction=0.08)
    faces.load()
    assert faces.ready
    return faces


def rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS / name).convert("RGB"))


def test_an_adults_face_is_found_with_an_adult_apparent_age(models: FaceAges) -> None:
    (face,) = models.faces(rgb("astronaut.jpg"))  # Eileen Collins, 36 when photographed
    x, y, w, h = face.box
    assert 150 < x + w / 2 < 260 and 80 < y + h / 2 < 180  # her face, not the flag
    assert 25 < face.apparent_age < 50


@pytest.mark.parametrize("name", ["chelsea.jpg", "coffee.jpg", "rocket.jpg", "motorcycle.jpg"])
def test_no_face_is_found_where_there_is_none(models: FaceAges, name: str) -> None:
    assert models.faces(rgb(name)) == []


def test_a_face_below_the_identifiable_size_is_ignored() -> None:
    strict = FaceAges(min_face_fraction=0.5)
    strict.load()
    assert strict.faces(rgb("astronaut.jpg")) == []


def test_unloaded_models_refuse_to_guess() -> None:
    with pytest.raises(TransientError):
        FaceAges(0.08).faces(rgb("astronaut.jpg"))
