"""Build cameo capture videos for tests: real encoded files made with PyAV, no downloads.

    from tests.capture_videos import make_capture

    path = make_capture(tmp_path / "me.mp4")                      # passes verify_capture
    path = make_capture(tmp_path / "still.mp4", kind="still")     # a photo re-encoded: rejected
    path = make_resizing_capture(tmp_path / "bomb.webm")          # small header, huge frames

Every kind but "not_video" is a real, playable video (H.264/AAC in .mp4/.mov, VP8/Opus in
.webm) whose only defect is the one the kind names, so a test that expects one rejection
reason gets that one. The face is a public-domain photograph (tests/data/faces/README.md)
that OpenCV's bundled frontal-face Haar cascade finds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from PIL import Image

__all__ = [
    "FACE_IMAGE",
    "KINDS",
    "SPOKEN_DIGITS",
    "CaptureKind",
    "make_capture",
    "make_resizing_capture",
    "multipart_body",
    "release_faces",
    "speak_digits",
    "spoken_challenge",
]

FACE_IMAGE = Path(__file__).parent / "data" / "faces" / "astronaut_face.jpg"
# digits PocketSphinx reliably hears in eSpeak NG's voice (it mishears the synthetic six,
# seven and eight in some runs): tests that go through the server give their challenge these
SPOKEN_DIGITS = "5 5 5 1 2 3"

CaptureKind = Literal[
    "good",  # one face moving and scaling, a spoken-like audio track: passes
    "busy",  # "good" in front of a busy, high-contrast background (a room full of things)
    "still",  # one face, the very same frame throughout (a photo turned into a video)
    "noisy_still",  # a still photo with flickering light and grain: frames differ, face fixed
    "no_face",  # moving shapes, no face
    "two_faces",  # two faces side by side, moving
    "no_audio",  # a good video without any audio stream
    "silent",  # a good video whose audio stream is all zeros
    "audio_only",  # sound and no video stream at all
    "not_video",  # bytes that are no container at all, whatever the file is named
]
KINDS: tuple[str, ...] = CaptureKind.__args__

_SAMPLE_RATE = 48_000
_CONTAINERS = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".webm": ("webm", "libvpx", "libopus"),
}


def make_capture(
    path: Path,
    *,
    kind: CaptureKind = "good",
    seconds: float = 4.0,
    fps: int = 12,
    size: tuple[int, int] = (360, 480),
    rotation: int = 0,
    moves: Sequence[str] | None = None,
    digits: str | None = None,
    face: Path = FACE_IMAGE,
) -> Path:
    """Write a capture video of `kind` to `path` and return the path.

    The container follows the suffix: .mp4 (the default for any other suffix), .mov or .webm.
    `seconds` sets the length (use 2 for "too short", 16 for "too long"); `size` is
    (width, height), both even. "not_video" writes a few KB of text whatever the suffix.
    `rotation` (a multiple of 90, counter-clockwise) stores the frames turned the other way
    with a display rotation that turns them upright, as phones store portrait video.
    `moves` (consent.challenges.MOVES): the head makes them in order (the photo turned in 3D,
    _HeadMesh), instead of drifting; `digits` (a string of 0-9): the sound track is eSpeak
    NG saying them. `face`: the photo of the person (one face).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind not in KINDS:
        raise ValueError(f"unknown capture kind {kind!r}; one of {KINDS}")
    if kind == "not_video":
        # looks like nothing PyAV can open: a renamed text file
        path.write_bytes(b"this is not a video, only text named like one\n" * 100)
        return path
    width, height = size
    if width % 2 or height % 2:
        raise ValueError("width and height must be even")
    count = max(1, round(seconds * fps))
    frames = None
    if kind != "audio_only":
        head_moves = tuple(moves) if moves else None
        # the frame size bound now: the generator runs after width and height are swapped
        # for a sideways (rotated) file below
        frame_size = (width, height)
        frames = (
            _frame(kind, i, count, *frame_size, moves=head_moves, image=face) for i in range(count)
        )
    audio = None
    if kind != "no_audio":
        if digits and kind != "silent":
            audio = _speech_track(digits, count / fps)
        else:
            audio = _audio(count / fps, silent=kind == "silent")
    turns = (rotation // 90) % 4
    if frames is not None and turns:
        frames = (np.ascontiguousarray(np.rot90(f, k=-turns)) for f in frames)
        if turns % 2:
            width, height = height, width
    _encode(path, frames, fps=fps, width=width, height=height, audio=audio, rotation=rotation)
    return path


def make_resizing_capture(
    path: Path,
    *,
    small: tuple[int, int] = (160, 120),
    big: tuple[int, int] = (5000, 5000),
    seconds: float = 4.0,
    fps: int = 4,
) -> Path:
    """A decompression bomb shaped as a capture: a VP8/Opus WebM whose header and first frame
    say `small`, every later frame `big`, with sound (so a check gets as far as decoding
    the picture). Returns the path.

    A VP8 keyframe may change the picture size, and the container's header is not asked: a
    decoder that trusts the header allocates `big` pictures. The file stays small (flat grey:
    one big keyframe, then one empty inter frame repeated) and takes a second or two to
    build. The finding it reproduces used 16000x16000 (VP8 allows up to 16383); 5000x5000
    breaks the 4096-a-side and 9.4-megapixel budget just the same and encodes far faster.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = max(2, round(seconds * fps))
    head = _vp8_packets(*small, frames=1, fps=fps)
    keyframe, repeat = _vp8_packets(*big, frames=2, fps=fps)
    with av.open(str(path), mode="w", format="webm") as out:
        video = out.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = small[0], small[1], "yuv420p"
        sound = out.add_stream("libopus", rate=_SAMPLE_RATE)
        sound.layout = "mono"
        for i, source in enumerate([head[0], keyframe] + [repeat] * (count - 2)):
            packet = av.Packet(bytes(source))
            packet.pts = packet.dts = i
            packet.duration = 1
            packet.time_base = Fraction(1, fps)
            packet.is_keyframe = i < 2
            packet.stream = video
            out.mux(packet)
        _mux_audio(out, sound, _audio(count / fps, silent=False), "libopus")
    return path


def _vp8_packets(width: int, height: int, *, frames: int, fps: int) -> list[av.Packet]:
    """VP8 packets of `frames` flat grey frames: a keyframe, then inter frames."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, fps), fps
    encoder.options = {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0"}
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(b"\x80" * plane.buffer_size)
    packets: list[av.Packet] = []
    for i in range(frames):
        frame.pts, frame.time_base = i, Fraction(1, fps)
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return packets


def multipart_body(
    payload: bytes,
    *,
    field: str = "video",
    filename: str = "capture.mp4",
    content_type: str = "video/mp4",
    boundary: str = "reelgraph-test-boundary-7d1f",
) -> tuple[bytes, str]:
    """A multipart/form-data body holding one file part; returns (body, Content-Type header)."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# ---------- frames ----------

_face_cache: dict[int, np.ndarray] = {}


def _face(height: int, image: Path = FACE_IMAGE) -> np.ndarray:
    """The face photo scaled to `height` pixels tall, RGB uint8."""
    if (image, height) not in _face_cache:
        with Image.open(image) as img:
            rgb = img.convert("RGB")
            w = round(rgb.width * height / rgb.height)
            resized = np.asarray(rgb.resize((w, height), Image.Resampling.BILINEAR))
            _face_cache[(image, height)] = resized
    return _face_cache[(image, height)]


def _busy(width: int, height: int) -> np.ndarray:
    """A cluttered room: many high-contrast blobs, bars and rings of every size and colour."""
    rng = np.random.default_rng(11)
    canvas = _background(width, height).copy()
    for _ in range(220):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(4, max(6, height // 8)))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.circle(canvas, (x, y), size, colour, -1)
        elif shape == 1:
            cv2.rectangle(canvas, (x, y), (x + size, y + size // 3), colour, -1)
        else:
            cv2.circle(canvas, (x, y), size, colour, max(1, size // 5))
    return canvas


def _background(width: int, height: int) -> np.ndarray:
    # a soft gradient: textured enough to encode like a room, with no face-like pattern
    y = np.linspace(40, 120, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 60, width, dtype=np.float32)[None, :]
    base = y + x
    return np.stack([base, base * 0.9 + 20, base * 0.7 + 40], axis=-1).astype(np.uint8)


def _paste(canvas: np.ndarray, img: np.ndarray, cx: float, cy: float) -> None:
    h, w = img.shape[:2]
    x0, y0 = round(cx - w / 2), round(cy - h / 2)
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(canvas.shape[1], x0 + w), min(canvas.shape[0], y0 + h)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = img[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def _frame(
    kind: str,
    i: int,
    count: int,
    width: int,
    height: int,
    *,
    moves: tuple[str, ...] | None = None,
    image: Path = FACE_IMAGE,
) -> np.ndarray:
    canvas = _busy(width, height) if kind == "busy" else _background(width, height)
    if moves and kind not in ("still", "noisy_still", "no_face", "two_faces"):
        # the head makes the moves, drifting a little as a hand-held phone does
        t = i / max(1, count - 1)
        yaw, pitch, roll = _pose_at(moves, t)
        head = _head(image, round(height * 0.55)).turn(yaw, pitch, roll)
        drift = math.sin(2 * math.pi * t)
        scale = 1.0 + 0.15 * drift
        h = round(head.shape[0] * scale)
        head = cv2.resize(head, (round(head.shape[1] * scale), h), interpolation=cv2.INTER_AREA)
        _paste(canvas, head, width / 2 + 0.08 * width * drift, height / 2)
        return canvas
    if kind == "noisy_still":
        face = _face(round(height * 0.55))
        _paste(canvas, face, width / 2, height / 2)
        # lighting that pulses and sensor grain: every frame differs, nothing moves
        rng = np.random.default_rng(i)
        light = 25 * math.sin(2 * math.pi * i / 6)
        noisy = canvas.astype(np.float32) + light + rng.normal(0, 6, canvas.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    # the head turns and nods: the box drifts and grows/shrinks over the clip
    t = 0.0 if kind == "still" else i / max(1, count - 1)
    phase = 2 * math.pi * t
    scale = 1.0 + 0.2 * math.sin(phase)
    dx, dy = 0.12 * width * math.sin(phase), 0.06 * height * math.sin(2 * phase)
    if kind == "no_face":
        # moving coloured blocks: frames change, nothing face-like
        s = round(height * 0.3 * scale)
        block = np.zeros((s, s, 3), np.uint8)
        block[:] = (200, 60, 60)
        block[s // 3 : 2 * s // 3] = (60, 60, 200)
        _paste(canvas, block, width / 2 + dx, height / 2 + dy)
        return canvas
    if kind == "two_faces":
        face = _face(round(height * 0.42 * scale), image)
        _paste(canvas, face, width * 0.27 + dx * 0.3, height / 2 + dy)
        _paste(canvas, face, width * 0.73 + dx * 0.3, height / 2 + dy)
        return canvas
    face = _face(round(height * 0.55 * scale), image)
    _paste(canvas, face, width / 2 + dx, height / 2 + dy)
    return canvas


# ---------- head moves: the face photo turned in 3D ----------

# the largest angle of each move, degrees: (yaw, pitch, roll); yaw > 0 turns the face towards
# the picture's right (the person's left), pitch > 0 looks up, roll > 0 tilts it clockwise in
# the picture (towards the person's left shoulder), as workers.faces measures them
MOVE_ANGLES = {
    "LEFT": (28.0, 0.0, 0.0),
    "RIGHT": (-28.0, 0.0, 0.0),
    "UP": (0.0, 22.0, 0.0),
    "DOWN": (0.0, -22.0, 0.0),
    "TILT_LEFT": (0.0, 0.0, 20.0),
    "TILT_RIGHT": (0.0, 0.0, -20.0),
}
# how far each landmark of the nose stands out of the face, in face widths
_NOSE_DEPTH = {27: 0.1, 28: 0.16, 29: 0.24, 30: 0.32, 31: 0.12, 32: 0.16, 33: 0.2, 34: 0.16}
_NOSE_DEPTH[35] = 0.12


class _HeadMesh:
    """A face photo as a rough 3D mesh: dlib's 68 landmarks (found in the photo) given depths
    from an ellipsoid head with a nose, triangulated with the photo's border (kept still, as
    shoulders and background are). turn() renders the photo with the head rotated: each
    triangle moved where the rotated, perspective-projected landmarks fall."""

    def __init__(self, image: np.ndarray) -> None:
        from workers import faces

        self.image = image
        h, w = image.shape[:2]
        boxes = faces.detect_faces(image)
        if len(boxes) != 1:
            raise ValueError(f"the face photo should hold one face, not {len(boxes)}")
        points = faces.landmarks(image, boxes[0]).points
        self.cx = (points[0, 0] + points[16, 0]) / 2
        self.cy = float(points[27:31, 1].mean())
        half = (points[16, 0] - points[0, 0]) / 2
        brow = points[[17, 19, 21, 22, 24, 26]] - np.array([0.0, 0.45 * half])
        face = np.vstack([points, brow])
        u = (face[:, 0] - self.cx) / half
        v = (face[:, 1] - self.cy) / (half * 1.3)
        depth = (
            half
            * 0.9
            * np.sqrt(np.clip(1 - 0.85 * np.minimum(1, u * u) - 0.3 * np.minimum(1, v * v), 0, 1))
        )
        for i, k in _NOSE_DEPTH.items():
            depth[i] += k * 2 * half
        border = [
            (fx * (w - 1), fy * (h - 1))
            for fx in (0.0, 0.5, 1.0)
            for fy in (0.0, 0.5, 1.0)
            if (fx, fy) != (0.5, 0.5)
        ]
        self.moving = len(face)
        self.src = np.vstack([face, np.array(border)]).astype(np.float64)
        self.depth = np.concatenate([depth, np.zeros(len(border))])
        subdiv = cv2.Subdiv2D((0, 0, w, h))
        for x, y in self.src:
            subdiv.insert((float(min(x, w - 1)), float(min(y, h - 1))))
        triangles = []
        for t in subdiv.getTriangleList():
            corners = t.reshape(3, 2)
            idx = [int(np.argmin(((self.src - c) ** 2).sum(1))) for c in corners]
            if len(set(idx)) == 3:
                triangles.append(idx)
        self.triangles = np.array(triangles)
        self.focal = 6.0 * w

    def turn(self, yaw: float, pitch: float, roll: float) -> np.ndarray:
        h, w = self.image.shape[:2]
        if not (yaw or pitch or roll):
            return self.image
        y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
        ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
        rotation = rz @ rx @ ry  # z towards the camera, the picture's y down
        centred = np.stack([self.src[:, 0] - self.cx, self.src[:, 1] - self.cy, self.depth], 1)
        moved = centred @ rotation.T
        scale = self.focal / (self.focal - moved[:, 2])
        dst = np.stack([moved[:, 0] * scale + self.cx, moved[:, 1] * scale + self.cy], 1)
        dst[self.moving :] = self.src[self.moving :]  # the border stays
        # which triangle each pixel shows: the nearest one drawn last
        owner = np.full((h, w), -1, np.int32)
        order = np.argsort(moved[self.triangles, 2].mean(axis=1))
        inverse = np.zeros((len(self.triangles), 2, 3))
        for k in order:
            tri = self.triangles[k]
            inverse[k] = cv2.getAffineTransform(
                dst[tri].astype(np.float32), self.src[tri].astype(np.float32)
            )
            cv2.fillConvexPoly(owner, np.round(dst[tri]).astype(np.int32), int(k))
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        covered = owner >= 0
        maps = inverse[np.where(covered, owner, 0)]
        map_x = np.where(covered, maps[..., 0, 0] * xs + maps[..., 0, 1] * ys + maps[..., 0, 2], xs)
        map_y = np.where(covered, maps[..., 1, 0] * xs + maps[..., 1, 1] * ys + maps[..., 1, 2], ys)
        return cv2.remap(
            self.image,
            map_x.astype(np.float32),
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )


_meshes: dict[tuple[Path, int], _HeadMesh] = {}


def _head(image: Path, height: int) -> _HeadMesh:
    if (image, height) not in _meshes:
        _meshes[(image, height)] = _HeadMesh(_face(height, image))
    return _meshes[(image, height)]


def _pose_at(moves: tuple[str, ...], t: float) -> tuple[float, float, float]:
    """The head's (yaw, pitch, roll) at time t (0..1 of the clip): a still start, then each
    move in its own equal slot, out and back with a hold at its far end."""
    lead = 0.08
    if t <= lead or not moves:
        return (0.0, 0.0, 0.0)
    slot = (1 - lead) / len(moves)
    k = min(len(moves) - 1, int((t - lead) / slot))
    u = (t - lead - k * slot) / slot  # 0..1 within the move's slot
    # out over the first 35%, held to 65%, back by 90%, neutral after
    if u < 0.35:
        amount = math.sin(math.pi / 2 * u / 0.35) ** 2
    elif u < 0.65:
        amount = 1.0
    elif u < 0.9:
        amount = math.cos(math.pi / 2 * (u - 0.65) / 0.25) ** 2
    else:
        amount = 0.0
    yaw, pitch, roll = MOVE_ANGLES[moves[k]]
    return (yaw * amount, pitch * amount, roll * amount)


# ---------- speech: the digits said by eSpeak NG ----------

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_espeak: list = []


def speak_digits(digits: str) -> tuple[np.ndarray, int]:
    """`digits` (a string of 0-9) spoken in English by eSpeak NG (espeakng-loader's library
    and voices, no download): (int16 mono samples, sample rate)."""
    import ctypes

    import espeakng_loader

    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )
    if not _espeak:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        chunks: list[np.ndarray] = []

        def collect(wav, count, _events):  # type: ignore[no-untyped-def]
            if wav and count > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            return 0

        keep = callback_type(collect)
        # AUDIO_OUTPUT_RETRIEVAL: samples come to the callback, nothing is played
        rate = lib.espeak_Initialize(1, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError("eSpeak NG did not start")
        lib.espeak_SetSynthCallback(keep)
        lib.espeak_SetVoiceByName(b"en-us")
        lib.espeak_SetParameter(1, 150, 0)  # words a minute
        _espeak.extend([lib, keep, chunks, rate])
    lib, _, chunks, rate = _espeak
    chunks.clear()
    text = ", ".join(_DIGIT_WORDS[int(d)] for d in digits).encode() + b"\0"
    lib.espeak_Synth(text, len(text), 0, 0, 0, 0, None, None)
    lib.espeak_Synchronize()
    return np.concatenate(chunks).astype(np.int16), rate


def _speech_track(digits: str, seconds: float) -> np.ndarray:
    """The digits spoken, resampled to the container's rate, centred in `seconds` of quiet
    room noise; float32 (1, n)."""
    voice, rate = speak_digits(digits)
    n_voice = round(len(voice) * _SAMPLE_RATE / rate)
    voice48 = (
        np.interp(
            np.linspace(0, len(voice) - 1, n_voice), np.arange(len(voice)), voice.astype(np.float32)
        )
        / 32768.0
    )
    n = round(seconds * _SAMPLE_RATE)
    track = np.random.default_rng(3).normal(0, 0.004, n).astype(np.float32)  # about -48 dBFS
    start = max(0, (n - n_voice) // 2)
    end = min(n, start + n_voice)
    track[start:end] += 0.8 * voice48[: end - start].astype(np.float32)
    return track[None, :]


def _audio(seconds: float, *, silent: bool) -> np.ndarray:
    n = round(seconds * _SAMPLE_RATE)
    if silent:
        return np.zeros((1, n), np.float32)
    t = np.arange(n, dtype=np.float32) / _SAMPLE_RATE
    # a voice-like tone whose loudness comes and goes like syllables, with a little noise
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    tone = 0.25 * envelope * np.sin(2 * np.pi * 220.0 * t)
    noise = np.random.default_rng(7).normal(0, 0.01, n).astype(np.float32)
    return (tone + noise).astype(np.float32)[None, :]


def _encode(
    path: Path,
    frames: Iterator[np.ndarray] | None,
    *,
    fps: int,
    width: int,
    height: int,
    audio: np.ndarray | None,
    rotation: int = 0,
) -> None:
    fmt, vcodec, acodec = _CONTAINERS.get(path.suffix.lower(), _CONTAINERS[".mp4"])
    with av.open(str(path), mode="w", format=fmt) as out:
        video = None
        if frames is not None:
            video = out.add_stream(vcodec, rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            if vcodec == "libx264":
                video.options = {"preset": "ultrafast", "crf": "23"}
            if rotation % 360:
                video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = out.add_stream(acodec, rate=_SAMPLE_RATE)
            sound.layout = "mono"
        if video is not None and frames is not None:
            for i, pixels in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                vf.pts, vf.time_base = i, Fraction(1, fps)
                out.mux(video.encode(vf))
            out.mux(video.encode(None))
        if sound is not None and audio is not None:
            _mux_audio(out, sound, audio, acodec)


def _mux_audio(
    out: av.container.OutputContainer, sound: av.AudioStream, audio: np.ndarray, acodec: str
) -> None:
    # one frame at a time keeps each within what the encoder accepts
    step = 960 if acodec == "libopus" else 1024
    fmt_name = sound.codec_context.format.name
    for start in range(0, audio.shape[1], step):
        chunk = audio[:, start : start + step]
        if fmt_name.startswith("s16"):
            chunk = (chunk * 32767).astype(np.int16)
        chunk = np.ascontiguousarray(chunk)  # mono: packed and planar are alike
        af = av.AudioFrame.from_ndarray(chunk, format=fmt_name, layout="mono")
        af.sample_rate = _SAMPLE_RATE
        af.pts, af.time_base = start, Fraction(1, _SAMPLE_RATE)
        out.mux(sound.encode(af))
    out.mux(sound.encode(None))


async def spoken_challenge(redis, challenge_id: str) -> tuple[list[str], str]:
    """Give the stored challenge (raw id) SPOKEN_DIGITS as its phrase, keeping its moves, and
    return (moves, digits) for make_capture: what the owner must do and say."""
    from dataclasses import replace

    from consent.challenges import load_challenge, store_challenge

    challenge = await load_challenge(redis, challenge_id)
    assert challenge is not None, "no such challenge"
    await store_challenge(redis, replace(challenge, phrase=SPOKEN_DIGITS))
    return list(challenge.moves), SPOKEN_DIGITS.replace(" ", "")


async def release_faces(graph) -> int:
    """Delete every cameo that holds a face (graph.cameos DELETE_CAMEO, as its owner would):
    captures all show the one face these videos can animate, and one face has one owner, so
    a test that captures it through a worker first frees it from earlier tests' cameos.
    Returns how many were deleted."""
    import time

    from graph import cameos as cameo_repo

    deleted = 0
    for row in await cameo_repo.faces_page(graph, "", 10_000):
        if await cameo_repo.delete_cameo(graph, row["ownerId"], int(time.time() * 1000)):
            deleted += 1
    return deleted
