"""What the prompt asks for, measured on the animator's frames: warmer light, falling particles,
a wink (by the face-landmark model on the output), parallax of the subject, prompts that
differ, and a landscape photo that fills a portrait frame."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

VERSION_DIR = Path(__file__).resolve().parents[2] / "models" / "alive_animator" / "1"
sys.path.insert(0, str(VERSION_DIR))  # as Triton's python backend sees the model's modules

import animator_render  # noqa: E402
import animator_subjects  # noqa: E402
import animator_vocabulary  # noqa: E402

from tests.models.test_animator import landscape, red_minus_blue  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "moderation" / "photos"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A portrait photo with one face (Eileen Collins, NASA, public domain), 512 x 512."""
    return np.asarray(Image.open(PHOTOS / "astronaut.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def valley() -> np.ndarray:
    return landscape(height=160, width=256, seed=2)


def render(photo: np.ndarray, prompt: str, frames: int = 24, fps: int = 12, size=(90, 160), **kw):
    return animator_render.animate(photo, prompt, 7, frames, fps, size[0], size[1], **kw)


def moving_specks(frames: np.ndarray, gap: int = 2) -> float:
    """Small things that moved, per frame pair: connected blobs of changed pixels no bigger
    than a raindrop or a snowflake."""
    counts = []
    for before, after in zip(frames[:-gap], frames[gap:], strict=True):
        changed = (np.abs(after.astype(np.int16) - before).max(axis=2) > 20).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
        counts.append(
            int(((stats[1:, cv2.CC_STAT_AREA] >= 2) & (stats[1:, cv2.CC_STAT_AREA] <= 80)).sum())
        )
    return float(np.mean(counts))


def test_golden_sunset_is_warmer_and_night_darker_than_the_default(valley: np.ndarray) -> None:
    default = render(valley, "make this photo come alive")[-6:]
    sunset = render(valley, "golden sunset")[-6:]
    night = render(valley, "at night")[-6:]
    warmth = [np.mean([red_minus_blue(f) for f in v]) for v in (default, sunset)]
    assert warmth[1] > warmth[0] + 15, warmth
    assert night.mean() < 0.7 * default.mean()


@pytest.mark.parametrize("prompt", ["make it rain", "snow falling"])
def test_rain_and_snow_add_many_small_moving_particles(valley: np.ndarray, prompt: str) -> None:
    # A smooth photo: the camera's motion alone then changes few pixels much.
    smooth = cv2.GaussianBlur(valley, (0, 0), 3)
    plain = moving_specks(render(smooth, "make this photo come alive", 12, 12, (180, 320)))
    weather = moving_specks(render(smooth, prompt, 12, 12, (180, 320)))
    assert weather > 15 and weather > 5 * max(plain, 1), (plain, weather)


def test_wink_closes_one_eye_and_not_the_other(astronaut: np.ndarray) -> None:
    frames = render(astronaut, "animate this selfie to wink and smile", 14, 12, (288, 512))
    (start,) = animator_subjects.find_faces(frames[0])
    (winking,) = animator_subjects.find_faces(frames[13])  # t = 1.08 s: the wink is closed
    before = [animator_subjects.eye_openness(start, eye) for eye in (0, 1)]
    during = [animator_subjects.eye_openness(winking, eye) for eye in (0, 1)]
    assert during[0] < 0.6 * before[0], (before, during)
    assert during[1] > 0.85 * before[1], (before, during)


def test_the_default_prompt_blinks_both_eyes_now_and_then(astronaut: np.ndarray) -> None:
    frames = render(astronaut, "make this photo come alive", 96, 24, (288, 512))
    openness = []
    for frame in frames[::2]:
        (face,) = animator_subjects.find_faces(frame)
        openness.append([animator_subjects.eye_openness(face, eye) for eye in (0, 1)])
    both = np.array(openness)
    normal = np.median(both, axis=0)
    shut = (both < 0.6 * normal).all(axis=1)
    assert shut.any() and shut.mean() < 0.2, both  # a blink, and eyes open most of the time


def displacement(
    before: np.ndarray, after: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """How far the patch ``box`` (left, top, right, bottom) of ``before`` moved in ``after``."""
    left, top, right, bottom = box
    patch = cv2.cvtColor(before[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
    scores = cv2.matchTemplate(cv2.cvtColor(after, cv2.COLOR_RGB2GRAY), patch, cv2.TM_CCOEFF_NORMED)
    _, _, _, (x, y) = cv2.minMaxLoc(scores)
    return np.array([x - left, y - top], np.float64)


def test_the_subject_moves_against_the_background(astronaut: np.ndarray) -> None:
    frames = render(astronaut, "pan right", 36, 12, (288, 512))
    first, last = frames[0], frames[-1]
    person = animator_subjects.person_mask(first) > 0.5
    ys, xs = np.nonzero(person)
    # The subject: the middle of the person; the background: a band left of them (the flag).
    subject = (int(np.percentile(xs, 30)), int(np.percentile(ys, 40)),
               int(np.percentile(xs, 70)), int(np.percentile(ys, 70)))  # fmt: skip
    columns = np.nonzero(~person[:200].any(axis=0))[0]
    assert len(columns) > 20, "the test photo should show background beside the person"
    background = (int(columns[2]), 20, int(columns[min(len(columns) - 3, 40)]), 200)
    moved_subject = displacement(first, last, subject)
    moved_background = displacement(first, last, background)
    assert abs(moved_background[0]) > 2  # the camera travelled
    assert np.abs(moved_subject - moved_background).max() >= 2, (moved_subject, moved_background)


def test_different_prompts_on_one_photo_and_seed_give_different_videos(valley: np.ndarray) -> None:
    prompts = [
        "make this photo come alive",
        "make it rain",
        "golden sunset",
        "snow at night",
        "fog",
    ]
    videos = [render(valley, prompt, frames=12) for prompt in prompts]
    for i in range(len(videos)):
        for j in range(i + 1, len(videos)):
            difference = np.abs(videos[i][-4:].astype(np.int16) - videos[j][-4:]).mean()
            assert difference > 4, (prompts[i], prompts[j], difference)


def sharpness(region: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_a_landscape_photo_fills_a_portrait_frame_and_the_camera_moves_across_it() -> None:
    photo = landscape(height=200, width=360, seed=4)
    filled = render(photo, "make this photo come alive", 36, 12, (90, 160), framing="fill")
    surround = render(photo, "make this photo come alive", 2, 12, (90, 160), framing="surround")
    # Filled, the whole of frame 0 is a crop of the photo at the frame's height; with the
    # surround it is not (blurred bands above and below the photo).
    scaled = cv2.resize(photo, (round(360 * 160 / 200), 160), interpolation=cv2.INTER_AREA)

    def place(frame: np.ndarray) -> tuple[float, int]:
        scores = cv2.matchTemplate(scaled, frame[2:-2, 2:-2], cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, _) = cv2.minMaxLoc(scores)
        return best, x

    (fit_first, x_first), (fit_last, x_last) = place(filled[0]), place(filled[-1])
    assert fit_first > 0.95 and place(surround[0])[0] < 0.9, (fit_first, place(surround[0]))
    # Later frames show another part of the photo: the camera travelled across it.
    assert fit_last > 0.7 and abs(x_last - x_first) > 10, (fit_last, x_first, x_last)


def test_auto_framing_keeps_faces_far_apart_whole(astronaut: np.ndarray) -> None:
    plan = animator_vocabulary.plan_motion("", 0)
    pair = np.concatenate([astronaut, astronaut], axis=1)  # two faces 500 pixels apart
    _, framing = animator_render.frame_photo(pair, 288, 512, plan, "auto")
    assert framing == "surround"
    _, framing = animator_render.frame_photo(astronaut, 288, 512, plan, "auto")
    assert framing == "fill"


def test_the_same_seed_gives_the_same_weather(valley: np.ndarray) -> None:
    a = render(valley, "rain and fog, sparkles", frames=6)
    assert np.array_equal(a, render(valley, "rain and fog, sparkles", frames=6))


def test_a_contact_sheet_has_a_labelled_row_of_frames_per_prompt(valley: np.ndarray) -> None:
    from alive_tools.contact_sheets import LABEL_HEIGHT, contact_sheet

    prompts = ["make it rain", "golden sunset"]
    sheet = contact_sheet(
        valley, prompts, width=90, height=160, seconds=1, fps=8, columns=4, thumb_width=45
    )
    assert sheet.size == (4 * 45, 2 * (80 + LABEL_HEIGHT))
    pixels = np.asarray(sheet)
    rows = [pixels[r * (80 + LABEL_HEIGHT) + LABEL_HEIGHT :][:80] for r in range(2)]
    assert red_minus_blue(rows[1]) > red_minus_blue(rows[0])  # the sunset row is warmer


def test_clouds_drift_inside_the_sky_not_over_the_ground(valley: np.ndarray) -> None:
    def change(prompt: str) -> tuple[float, float]:
        frames = render(valley, prompt, 24, 8, (90, 160)).astype(np.int16)
        moved = np.abs(frames[-1] - frames[-9]).mean(axis=(1, 2))  # per row, the last second
        return float(moved[:40].mean()), float(moved[100:].mean())  # sky rows, ground rows

    sky_plain, ground_plain = change("make this photo come alive")
    sky_clouds, ground_clouds = change("clouds in the sky")
    assert sky_clouds > sky_plain + 1.5, (sky_plain, sky_clouds)
    assert abs(ground_clouds - ground_plain) < 1.0, (ground_plain, ground_clouds)


def test_fog_lowers_the_contrast(valley: np.ndarray) -> None:
    plain = render(valley, "make this photo come alive")[-1].astype(np.float64)
    foggy = render(valley, "misty morning")[-1].astype(np.float64)
    assert foggy.std() < 0.8 * plain.std()


def bright_specks(frame: np.ndarray, reference: np.ndarray, rows: slice) -> int:
    """Small spots much brighter than the same place in ``reference``."""
    lift = frame[rows].astype(np.int16).min(axis=2) - reference[rows].astype(np.int16).min(axis=2)
    count, _ = cv2.connectedComponents((lift > 40).astype(np.uint8))
    return count - 1


def test_sparkles_and_stars_add_bright_points_stars_only_in_the_sky(valley: np.ndarray) -> None:
    starry = render(valley, "a starry night", 13, 12, (180, 320))[-1]
    surroundings = cv2.medianBlur(starry, 5)  # a star is a point brighter than around it
    assert bright_specks(starry, surroundings, slice(0, 80)) > 10  # the sky is the top 45 %
    assert bright_specks(starry, surroundings, slice(200, 320)) == 0
    plain = render(valley, "make this photo come alive", 13, 12, (180, 320))[-1]
    sparkling = render(valley, "magical sparkles", 13, 12, (180, 320))[-1]
    assert bright_specks(sparkling, plain, slice(0, 320)) >= 5


def test_light_rays_brighten_the_frame_in_bands(valley: np.ndarray) -> None:
    plain = render(valley, "make this photo come alive")[-1].astype(np.float64)
    rays = render(valley, "sunbeams")[-1].astype(np.float64)
    lift = (rays - plain).mean(axis=2)
    assert lift.mean() > 1 and np.percentile(lift, 90) > 2 * max(np.percentile(lift, 10), 0.5)


def landmark_series(frames: np.ndarray) -> list[animator_subjects.Face]:
    faces = []
    for frame in frames:
        (face,) = animator_subjects.find_faces(frame)
        faces.append(face)
    return faces


def test_smile_lifts_the_mouth_corners_and_tilt_turns_the_head(astronaut: np.ndarray) -> None:
    def corners_above_lips(face: animator_subjects.Face) -> float:
        points = face.points
        lips = (points[13, 1] + points[14, 1]) / 2
        corners = (points[61, 1] + points[291, 1]) / 2
        return float(lips - corners)

    def eye_line_degrees(face: animator_subjects.Face) -> float:
        left, right = face.points[33], face.points[263]
        return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))

    plain = landmark_series(
        render(astronaut, "make this photo come alive", 36, 12, (288, 512))[::5]
    )
    smiling = landmark_series(render(astronaut, "smile", 36, 12, (288, 512))[::5])
    lift = corners_above_lips(smiling[-1]) - corners_above_lips(plain[-1])
    assert lift > 1.0, lift  # pixels, on a face about 100 pixels wide
    tilting = landmark_series(render(astronaut, "tilt your head", 60, 12, (288, 512))[::4])
    turned = [abs(eye_line_degrees(f) - eye_line_degrees(tilting[0])) for f in tilting]
    steady = [abs(eye_line_degrees(f) - eye_line_degrees(plain[0])) for f in plain]
    assert max(turned) > 1.5 and max(turned) > 2 * max(steady), (turned, steady)


def test_the_wind_reaches_the_hair_and_not_the_face(astronaut: np.ndarray) -> None:
    import animator_scene

    scene = animator_scene.analyse(astronaut)
    (face,) = scene.faces
    left, top, right, bottom = (v / scene.grid_scale for v in face.box())
    columns = slice(int(left) + 2, int(right) - 2)
    eyes = face.points[[33, 263], 1].mean() / scene.grid_scale
    hair = scene.foliage[int(top) : int(top + 0.6 * (eyes - top)), columns]
    cheeks = scene.foliage[int(eyes) + 3 : int(bottom) - 2, columns]
    assert hair.mean() > 0.3 and cheeks.max() < 0.1, (hair.mean(), cheeks.max())
