"""workers/liveness.verify_capture on real encoded capture videos (tests/capture_videos.py):
the presence checks, and the challenge (head moves from 68 landmarks, digits heard by
PocketSphinx from eSpeak NG's voice)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.capture_videos import SPOKEN_DIGITS, make_capture
from workers.faces import EMBEDDING_SIZE
from workers.liveness import CaptureChallenge, LivenessResult, verify_capture


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captures")


def _rejected(result: LivenessResult, code: str) -> None:
    assert not result.ok
    assert result.code == code, result.reason
    assert result.reference_frames == []
    # a sentence a person can act on: no codec jargon, no file paths, ends like a sentence
    assert result.reason is not None and result.reason.endswith(".")
    assert "/" not in result.reason.replace("MP4, MOV or WebM", "")
    assert "Error" not in result.reason


def _one_face(jpeg: bytes) -> int:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "reference frame is not a JPEG"
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    return len(cascade.detectMultiScale(image, scaleFactor=1.1, minNeighbors=5))


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm"])
def test_a_live_capture_passes_with_face_crops(captures: Path, suffix: str) -> None:
    path = make_capture(captures / f"good{suffix}")
    result = verify_capture(path)
    assert result.ok, result.reason
    assert result.reason is None and result.code is None
    assert result.duration_s == pytest.approx(4.0, abs=0.1)
    assert result.frames_sampled == 20  # 5 a second
    assert result.frames_with_one_face >= 14
    assert len(result.reference_frames) == 3
    for jpeg in result.reference_frames:
        assert jpeg[:2] == b"\xff\xd8"
        # the crop is the face with a margin: smaller than the frame, and the face is in it
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[0] < 480 and image.shape[1] < 360
        assert _one_face(jpeg) == 1
    # cut from different moments of the capture, not one frame thrice
    assert len(set(result.reference_frames)) == 3


@pytest.mark.parametrize("seconds", [3, 15])
def test_lengths_at_the_limits_pass(captures: Path, seconds: int) -> None:
    result = verify_capture(make_capture(captures / f"len{seconds}.mp4", seconds=seconds))
    assert result.ok, result.reason


def test_too_short(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "short.mp4", seconds=2))
    _rejected(result, "TOO_SHORT")
    assert "2.0 seconds" in result.reason and "between 3 and 15 seconds" in result.reason


def test_too_long(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "long.mp4", seconds=17))
    _rejected(result, "TOO_LONG")
    assert "between 3 and 15 seconds" in result.reason


def test_limits_are_arguments(captures: Path) -> None:
    path = make_capture(captures / "five.mp4", seconds=5)
    assert verify_capture(path, min_s=3, max_s=15).ok
    _rejected(verify_capture(path, min_s=6, max_s=15), "TOO_SHORT")
    _rejected(verify_capture(path, min_s=1, max_s=4), "TOO_LONG")


def test_a_still_picture_is_rejected(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "still.mp4", kind="still"))
    _rejected(result, "STILL_PICTURE")
    # the face was there all along: it is the movement that is missing
    assert result.frames_with_one_face == result.frames_sampled == 20
    assert "did not move" in result.reason


def test_a_still_picture_with_flicker_and_grain_is_rejected(captures: Path) -> None:
    # every frame differs, yet the face box stays put
    result = verify_capture(make_capture(captures / "noisy.mp4", kind="noisy_still"))
    _rejected(result, "STILL_PICTURE")


def test_no_face(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "noface.mp4", kind="no_face"))
    _rejected(result, "NO_FACE")
    assert "0 of 20" in result.reason and "facing the camera" in result.reason


def test_two_faces(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "two.mp4", kind="two_faces"))
    _rejected(result, "MANY_FACES")
    assert "alone" in result.reason


def test_no_audio_stream(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "mute.mp4", kind="no_audio"))
    _rejected(result, "NO_AUDIO")
    assert "microphone" in result.reason


def test_silent_audio(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "silent.mp4", kind="silent"))
    _rejected(result, "SILENT")


def test_sound_without_video(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "audio.mp4", kind="audio_only"))
    _rejected(result, "NOT_VIDEO")
    assert "no video" in result.reason


def test_a_text_file_named_mp4(captures: Path) -> None:
    _rejected(verify_capture(make_capture(captures / "text.mp4", kind="not_video")), "NOT_VIDEO")


def test_a_playlist_is_never_followed(captures: Path) -> None:
    # an HLS playlist named .mp4 would make FFmpeg's guessed demuxer read the files it lists
    good = make_capture(captures / "target.mp4")
    playlist = captures / "playlist.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:4.0,\n{good}\n#EXT-X-ENDLIST\n")
    _rejected(verify_capture(playlist), "NOT_VIDEO")


def test_an_empty_and_a_missing_file(captures: Path) -> None:
    empty = captures / "empty.mp4"
    empty.write_bytes(b"")
    _rejected(verify_capture(empty), "NOT_VIDEO")
    _rejected(verify_capture(captures / "missing.mp4"), "NOT_VIDEO")


def test_a_truncated_file(captures: Path) -> None:
    good = make_capture(captures / "whole.mp4")
    cut = captures / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _rejected(verify_capture(cut), "NOT_VIDEO")


def test_the_extension_is_not_trusted(captures: Path) -> None:
    # a WebM named .mp4 is judged by its bytes, and passes
    webm = make_capture(captures / "real.webm")
    renamed = captures / "renamed.mp4"
    shutil.copy(webm, renamed)
    assert verify_capture(renamed).ok


def test_absurd_dimensions_are_refused_before_decoding(captures: Path) -> None:
    result = verify_capture(make_capture(captures / "wide.mp4", size=(4200, 128)))
    _rejected(result, "TOO_LARGE")
    assert "4200x128" in result.reason
    assert result.frames_sampled == 0


def test_a_picture_too_small_for_a_face(captures: Path) -> None:
    _rejected(verify_capture(make_capture(captures / "tiny.mp4", size=(96, 96))), "TOO_SMALL")


def test_slow_motion_frame_rates_are_refused_before_decoding(captures: Path) -> None:
    path = make_capture(captures / "fast.mp4", seconds=3, fps=150, size=(160, 120))
    result = verify_capture(path)
    _rejected(result, "FRAME_RATE")
    assert result.frames_sampled == 0


def test_too_few_frames(captures: Path) -> None:
    # a 1 fps slideshow has 4 frames in 4 seconds: too few to judge presence or movement
    result = verify_capture(make_capture(captures / "slides.mp4", fps=1))
    _rejected(result, "TOO_FEW_FRAMES")


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_phone_video_stored_sideways_is_turned_upright(captures: Path, rotation: int) -> None:
    # the cascade finds only upright faces: this passes only if the display rotation is applied
    result = verify_capture(make_capture(captures / f"rot{rotation}.mp4", rotation=rotation))
    assert result.ok, result.reason
    # the crops are upright too: the renderer gets the face the right way up
    assert all(_one_face(jpeg) == 1 for jpeg in result.reference_frames)


# ---------- the challenge ----------

DIGITS = SPOKEN_DIGITS.replace(" ", "")


def _challenge(*moves: str, digits: str = DIGITS) -> CaptureChallenge:
    return CaptureChallenge(digits=digits, moves=moves)


@pytest.mark.parametrize(
    "moves",
    [
        ("LEFT", "RIGHT", "UP", "DOWN"),
        ("TILT_LEFT", "UP", "RIGHT"),
        ("DOWN", "TILT_RIGHT", "LEFT", "UP"),
    ],
)
def test_a_capture_that_answers_its_challenge_passes(captures: Path, moves: tuple) -> None:
    path = make_capture(captures / "answer.mp4", seconds=8, moves=moves, digits=DIGITS)
    result = verify_capture(path, challenge=_challenge(*moves))
    assert result.ok, result.reason
    assert result.moves_seen == moves
    assert result.digits_heard == DIGITS
    assert result.embedding is not None and len(result.embedding) == EMBEDDING_SIZE


def test_a_mirrored_recording_of_the_moves_passes(captures: Path) -> None:
    # a front camera that stores the picture mirrored swaps left and right in the file
    moves = ("RIGHT", "UP", "TILT_RIGHT")
    path = make_capture(captures / "mirror.mp4", seconds=6, moves=moves, digits=DIGITS)
    assert verify_capture(path, challenge=_challenge("LEFT", "UP", "TILT_LEFT")).ok


def test_moves_in_the_wrong_order_are_rejected(captures: Path) -> None:
    path = make_capture(
        captures / "order.mp4", seconds=6, moves=("LEFT", "UP", "RIGHT"), digits=DIGITS
    )
    result = verify_capture(path, challenge=_challenge("UP", "LEFT", "RIGHT"))
    _rejected(result, "WRONG_MOVES")
    assert result.moves_seen == ("LEFT", "UP", "RIGHT")
    assert "look up, turn left, turn right, in that order" in result.reason
    assert "we saw turn left, look up, turn right" in result.reason


def test_a_head_that_only_drifts_makes_no_moves(captures: Path) -> None:
    # the presence check's moving face, with no head turns: no challenge answered
    path = make_capture(captures / "drift.mp4", seconds=6, digits=DIGITS)
    result = verify_capture(path, challenge=_challenge("LEFT", "UP", "RIGHT"))
    _rejected(result, "WRONG_MOVES")


def test_the_wrong_digits_are_rejected(captures: Path) -> None:
    moves = ("LEFT", "UP", "RIGHT")
    path = make_capture(captures / "digits.mp4", seconds=6, moves=moves, digits=DIGITS)
    result = verify_capture(path, challenge=_challenge(*moves, digits="904904"))
    _rejected(result, "WRONG_DIGITS")
    assert "9 0 4 9 0 4" in result.reason


def test_sound_without_speech_is_rejected(captures: Path) -> None:
    # a humming tone: sound, but no digits said
    moves = ("LEFT", "UP", "RIGHT")
    path = make_capture(captures / "hum.mp4", seconds=6, moves=moves)
    result = verify_capture(path, challenge=_challenge(*moves))
    _rejected(result, "NO_SPEECH")
    assert "say each digit" in result.reason


def test_a_still_photo_cannot_answer(captures: Path) -> None:
    path = make_capture(captures / "photo.mp4", kind="still", seconds=6, digits=DIGITS)
    _rejected(verify_capture(path, challenge=_challenge("LEFT", "UP")), "STILL_PICTURE")


def test_two_people_cannot_answer(captures: Path) -> None:
    path = make_capture(captures / "pair.mp4", kind="two_faces", seconds=6, digits=DIGITS)
    _rejected(verify_capture(path, challenge=_challenge("LEFT", "UP")), "MANY_FACES")


def test_a_portrait_with_a_busy_background_is_one_face(captures: Path) -> None:
    moves = ("TILT_RIGHT", "DOWN", "LEFT")
    path = make_capture(captures / "busy.mp4", kind="busy", seconds=6, moves=moves, digits=DIGITS)
    result = verify_capture(path, challenge=_challenge(*moves))
    assert result.ok, result.reason
    assert result.frames_with_one_face == result.frames_sampled
