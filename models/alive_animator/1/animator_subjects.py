"""People and faces in the photo, found by the models that ship inside the mediapipe wheel.

mediapipe 0.10.14 (Apache-2.0) carries its selfie segmentation, face detection and face mesh
models (.tflite) in the wheel, so nothing is downloaded. Its "solutions" graphs are built once
per process (the first call) and reused; each call is a still image (static_image_mode).
The landmark indices below are the face mesh's (468 points, plus 10 on the irises that the
attention model adds: it places eyelids and lips more precisely).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# Face mesh landmarks: each eye as (outer corner, inner corner, upper lid, lower lid). "First"
# is the eye on the image's left (the subject's right eye).
EYES = ((33, 133, 159, 145), (263, 362, 386, 374))
MOUTH_CORNERS = (61, 291)
CHIN, FOREHEAD = 152, 10
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)  # fmt: skip


@dataclass(frozen=True)
class Face:
    """One face's landmarks in pixels of the image it was found in, [478, 2] (x, y)."""

    points: Array

    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the face oval."""
        oval = self.points[list(FACE_OVAL)]
        return (
            float(oval[:, 0].min()),
            float(oval[:, 1].min()),
            float(oval[:, 0].max()),
            float(oval[:, 1].max()),
        )


def eye_openness(face: Face, eye: int) -> float:
    """Lid gap over eye width: ~0.25-0.35 open, under ~0.12 closed."""
    outer, inner, upper, lower = (face.points[i] for i in EYES[eye])
    width = float(np.linalg.norm(outer - inner))
    return float(np.linalg.norm(upper - lower)) / max(width, 1e-6)


def _protobuf_compatibility() -> None:
    """mediapipe 0.10.14 (its Python code and its C++ bindings) reads results with
    ``GetPrototype`` of protobuf's SymbolDatabase and MessageFactory, which protobuf 5 removed
    (this project pins protobuf 6 for gRPC). protobuf's stated replacement is
    ``message_factory.GetMessageClass``, so the method is put back as exactly that, before
    mediapipe is imported."""
    from google.protobuf import message_factory, symbol_database

    def get_prototype(_: object, descriptor: Any) -> Any:
        return message_factory.GetMessageClass(descriptor)

    for cls in (symbol_database.SymbolDatabase, message_factory.MessageFactory):
        if not hasattr(cls, "GetPrototype"):
            setattr(cls, "GetPrototype", get_prototype)  # noqa: B010 (absent from the stubs)


@functools.cache
def _face_mesh() -> Any:
    _protobuf_compatibility()
    from mediapipe.python.solutions import face_mesh

    return face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=4, refine_landmarks=True,
        min_detection_confidence=0.5,
    )  # fmt: skip


@functools.cache
def _face_detector() -> Any:
    _protobuf_compatibility()
    from mediapipe.python.solutions import face_detection

    # The full-range model: faces up to ~5 m, as in group photos (the mesh's own detector is
    # for faces near the camera).
    return face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)


@functools.cache
def _segmenter() -> Any:
    _protobuf_compatibility()
    from mediapipe.python.solutions import selfie_segmentation

    return selfie_segmentation.SelfieSegmentation(model_selection=0)


def find_faces(rgb: Array) -> list[Face]:
    """The faces in an RGB uint8 image, with their landmarks."""
    height, width = rgb.shape[:2]
    result = _face_mesh().process(np.ascontiguousarray(rgb))
    faces = []
    for landmarks in result.multi_face_landmarks or ():
        points = np.array([(p.x * width, p.y * height) for p in landmarks.landmark], np.float32)
        faces.append(Face(points))
    return faces


def face_boxes(rgb: Array) -> list[tuple[float, float, float, float]]:
    """(left, top, right, bottom) in pixels of every face the detector finds, near or far."""
    height, width = rgb.shape[:2]
    result = _face_detector().process(np.ascontiguousarray(rgb))
    boxes = []
    for detection in result.detections or ():
        box = detection.location_data.relative_bounding_box
        left, top = box.xmin * width, box.ymin * height
        boxes.append((left, top, left + box.width * width, top + box.height * height))
    return boxes


def person_mask(rgb: Array) -> Array:
    """0..1 per pixel: how surely it belongs to a person (float32, the image's size)."""
    mask: Array = _segmenter().process(np.ascontiguousarray(rgb)).segmentation_mask
    return np.clip(mask, 0, 1).astype(np.float32)
