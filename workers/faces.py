"""Faces in capture frames: dlib's detector, 68 landmarks, head pose and 128-d embeddings.

Everything is offline: the models are files inside installed wheels. dlib's frontal-face
detector (HOG with a linear SVM) is built into dlib itself; the 68-point landmark model and
the ResNet face-embedding model come from the `face_recognition_models` wheel, read by path
(its `__init__` imports pkg_resources, which current setuptools no longer has, so the package
is located with importlib and never imported).

Why HOG and not the Haar cascade: the cascade found extra "faces" in busy backgrounds (a
one-person portrait refused as "more than one face"); dlib's HOG detector does not, and on a
480-pixel frame it takes about 15 ms on one CPU core. (dlib's CNN detector would be more
accurate on turned heads but its model is not in the wheel we use and costs ~1 s a frame on a
CPU.)

Head pose: cv2.solvePnP of six landmarks (nose tip, chin, outer eye corners, mouth corners)
against a generic 3D face, giving yaw and pitch; roll is the angle of the line through the
outer eye corners. Angles are only compared with the same person's own neutral pose in the
same video (workers.liveness), so the generic model's bias cancels.

Embeddings: dlib's 128-d descriptor (99.38% on LFW); two photos of one person are customarily
under 0.6 apart (Euclidean). workers.face_index matches them (one face, one owner; public
figures, whose reference photos photo_embedding reads).

Models load once per process (models()); the sandboxed child loads them before it confines
itself, and they take ~130 MB of memory.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

__all__ = [
    "EMBEDDING_SIZE",
    "Face",
    "FaceModels",
    "PhotoError",
    "Pose",
    "detect_faces",
    "embedding",
    "head_pose",
    "landmarks",
    "model_dir",
    "models",
    "photo_embedding",
]

EMBEDDING_SIZE = 128
DETECT_SIDE = 480  # frames are searched for faces at most this large
MIN_FACE_SHARE = 0.1  # a face smaller than this share of the frame's short side is background
_LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
_EMBEDDING_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# a generic 3D face (millimetres, x right, y down, z towards the camera): nose tip, chin,
# outer corners of the eyes (the person's right, left), corners of the mouth
_MODEL_POINTS = np.array(
    [
        (0.0, 0.0, 0.0),
        (0.0, 330.0, -65.0),
        (-225.0, -170.0, -135.0),
        (225.0, -170.0, -135.0),
        (-150.0, 150.0, -125.0),
        (150.0, 150.0, -125.0),
    ],
    dtype=np.float64,
)
_POSE_LANDMARKS = [30, 8, 36, 45, 48, 54]

Box = tuple[float, float, float, float]  # x, y, width, height in frame pixels


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees. yaw: positive when the face turns towards the picture's right
    (the person's left, in an unmirrored video); pitch: positive up; roll: positive when the
    head tilts clockwise in the picture (towards the person's left shoulder)."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class Face:
    box: Box
    points: np.ndarray  # the 68 landmarks, (68, 2) float, frame pixels


class FaceModels:
    """dlib's detector, landmark predictor and embedding network, loaded together."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or model_dir()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(folder / _LANDMARKS_FILE))
        self.encoder = dlib.face_recognition_model_v1(str(folder / _EMBEDDING_FILE))


_models: list[FaceModels] = []
MAX_PHOTO_PIXELS = 40_000_000  # an operator's reference photo: refused past this


class PhotoError(ValueError):
    """A reference photo that cannot give one face: the message says why, for a person."""


def model_dir() -> Path:
    """The folder of the face_recognition_models wheel's model files (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face_recognition_models package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (_LANDMARKS_FILE, _EMBEDDING_FILE):
        if not (folder / name).is_file():
            raise RuntimeError(f"face_recognition_models has no {name}")
    return folder


def models() -> FaceModels:
    """This process's models, loaded on first use (about 1.5 s)."""
    if not _models:
        _models.append(FaceModels())
    return _models[0]


def detect_faces(frame: np.ndarray) -> list[Box]:
    """Face boxes in an RGB frame (any size; searched at most DETECT_SIDE large). Faces
    smaller than MIN_FACE_SHARE of the short side are ignored: a selfie face is large."""
    h, w = frame.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = frame
    if scale < 1.0:
        small = cv2.resize(
            frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    detector = models().detector
    found = detector(grey, 0)
    if len(found) == 0:  # small faces need the upsampled pass (4x the work)
        found = detector(grey, 1)
    least = min(grey.shape) * MIN_FACE_SHARE
    back = 1.0 / scale
    boxes = []
    for r in found:
        if min(r.width(), r.height()) < least:
            continue
        boxes.append((r.left() * back, r.top() * back, r.width() * back, r.height() * back))
    return boxes


def _rect(box: Box) -> dlib.rectangle:
    x, y, w, h = box
    return dlib.rectangle(round(x), round(y), round(x + w), round(y + h))


def landmarks(frame: np.ndarray, box: Box) -> Face:
    """The 68 landmarks of the face in `box` (an RGB frame)."""
    shape = models().predictor(frame, _rect(box))
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return Face(box=box, points=points)


def head_pose(face: Face, size: tuple[int, int]) -> Pose | None:
    """The head's pose from its landmarks in a frame of `size` (width, height); None when
    solvePnP finds none."""
    width, height = size
    focal = float(max(width, height))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    image_points = face.points[_POSE_LANDMARKS]
    ok, rvec, _ = cv2.solvePnP(
        _MODEL_POINTS, image_points, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    sy = math.hypot(rotation[0, 0], rotation[1, 0])
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    yaw = math.degrees(math.atan2(-rotation[2, 0], sy))
    (x0, y0), (x1, y1) = face.points[36], face.points[45]
    roll = math.degrees(math.atan2(y1 - y0, x1 - x0))
    if not all(math.isfinite(a) for a in (yaw, pitch, roll)):
        return None
    return Pose(yaw=yaw, pitch=pitch, roll=roll)


def embedding(frame: np.ndarray, face: Face) -> np.ndarray:
    """The 128-d descriptor of the face (float32, unit-free; same person: under ~0.6 apart)."""
    m = models()
    shape = m.predictor(frame, _rect(face.box))
    return np.asarray(m.encoder.compute_face_descriptor(frame, shape), dtype=np.float32)


def photo_embedding(path: Path) -> np.ndarray:
    """The embedding of the one face in a still photo (a public figure's reference photo, as
    an operator supplies it). Raises PhotoError when the file is no readable picture, or
    shows no face or more than one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PHOTO_PIXELS:
                raise PhotoError(f"{path}: the picture is larger than {MAX_PHOTO_PIXELS} pixels")
            frame = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise PhotoError(f"{path}: not a picture that can be read ({exc})") from None
    boxes = detect_faces(frame)
    if not boxes:
        raise PhotoError(f"{path}: no face found; use a photo where the face is clear and large")
    if len(boxes) > 1:
        raise PhotoError(f"{path}: {len(boxes)} faces found; use a photo of the person alone")
    return embedding(frame, landmarks(frame, boxes[0]))
