"""PDQ per frame (provenance.pdq) and the fingerprint index (provenance.fingerprints), on
real rendered video: identical frames are 0 bits apart, an H.264 re-encode at CRF 30 and a
half-size copy stay within the match distance, unrelated pictures sit near 128; the index
finds every frame within 31 bits and nothing past it, and what one process stored in Redis
every other one finds."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import redis.asyncio as aredis
from PIL import Image

from provenance.fingerprints import (
    FINGERPRINTS,
    LOG,
    FingerprintIndex,
    pack,
    store_fingerprint,
    sync_index,
    unpack,
)
from provenance.pdq import MATCH_DISTANCE, FrameHash, hamming, hash_frame, video_hashes
from workers.renderers.base import RenderSpec
from workers.renderers.preview import PreviewRenderer

FACE = Path(__file__).resolve().parent / "data" / "faces" / "astronaut_face.jpg"


def reencode(src: Path, dst: Path, *, crf: int = 30, scale: float = 1.0) -> Path:
    """src through libx264 again (medium preset), optionally scaled, timestamps kept."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        width = int(stream.codec_context.width * scale) // 2 * 2
        height = int(stream.codec_context.height * scale) // 2 * 2
        video = out.add_stream("libx264", rate=stream.average_rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = stream.time_base or Fraction(1, 24)
        video.options = {"crf": str(crf), "preset": "medium"}
        for frame in inp.decode(stream):
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts, scaled.time_base = frame.pts, frame.time_base
            out.mux(video.encode(scaled))
        out.mux(video.encode(None))
    return dst


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    spec = RenderSpec(
        clip_id="fp1",
        prompt="a lighthouse in a storm, waves breaking",
        duration_s=4,
        seed=7,
        author_handle="keeper",
    )
    path = PreviewRenderer().render(spec, lambda _f: None)
    target = tmp_path_factory.mktemp("fp") / "clip.mp4"
    path.rename(target)
    return target


def test_pdq_identical_reencoded_scaled_and_unrelated(clip: Path, tmp_path: Path) -> None:
    original = video_hashes(clip)
    assert [round(h.at_s) for h in original] == [0, 1, 2, 3]  # one frame a second
    assert all(h.quality >= 50 for h in original)
    assert [hamming(a.hash, b.hash) for a, b in zip(original, video_hashes(clip), strict=True)] == [
        0
    ] * 4
    for copy in (
        reencode(clip, tmp_path / "crf30.mp4"),
        reencode(clip, tmp_path / "half.mp4", scale=0.5),
    ):
        distances = [
            hamming(a.hash, b.hash) for a, b in zip(original, video_hashes(copy), strict=True)
        ]
        assert max(distances) <= MATCH_DISTANCE, (copy.name, distances)
    face = np.asarray(Image.open(FACE).convert("RGB"))
    unrelated = hash_frame(face)[0]
    assert all(90 <= hamming(h.hash, unrelated) <= 166 for h in original)


def test_not_a_video_raises(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises((av.FFmpegError, ValueError)):
        video_hashes(junk)


def _flip(hashes: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    unpacked = np.unpackbits(hashes, axis=1)
    for row in unpacked:
        row[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def test_the_index_finds_within_31_bits_and_nothing_past() -> None:
    rng = np.random.default_rng(3)
    index = FingerprintIndex()
    clips = [(f"clip{i}", rng.integers(0, 256, (8, 32), dtype=np.uint8)) for i in range(2000)]
    index.add_many(clips)
    target = clips[777][1]
    (near,) = index.lookup(_flip(target, 31, rng))
    assert (near.clip_id, near.matched_frames, near.query_frames) == ("clip777", 8, 8)
    assert index.lookup(_flip(target, 40, rng)) == []
    assert index.lookup(rng.integers(0, 256, (8, 32), dtype=np.uint8)) == []
    # half the frames is enough (a trimmed copy); fewer is not
    half = np.concatenate([target[:4], rng.integers(0, 256, (4, 32), dtype=np.uint8)])
    assert [m.clip_id for m in index.lookup(half)] == ["clip777"]
    assert index.lookup(np.concatenate([target[:3], half[4:], half[4:5]])) == []
    # a clip added after the merge sits in the tail and is found too
    index.add("late", target[:2] ^ 0xFF)
    assert [m.clip_id for m in index.lookup(target[:2] ^ 0xFF)] == ["late"]
    assert index.frames == 2000 * 8 + 2


def test_packing_keeps_usable_frames_only() -> None:
    good = FrameHash(0.0, bytes(range(32)), 90)
    flat = FrameHash(1.0, bytes(32), 10)
    assert unpack(pack([good, flat])).tobytes() == good.hash
    with pytest.raises(ValueError):
        unpack("bm90IGEgZmluZ2VycHJpbnQ=")


async def test_what_one_process_stores_every_index_finds(settings, clip: Path) -> None:
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        hashes = video_hashes(clip)
        clip_id = f"fp-sync-{id(hashes)}"
        first, second = FingerprintIndex(), FingerprintIndex()
        await sync_index(client, first)
        assert await store_fingerprint(client, clip_id, hashes)
        assert not await store_fingerprint(client, clip_id, hashes)  # once per clip
        assert not await store_fingerprint(client, "flat", [FrameHash(0, bytes(32), 0)])
        for index in (first, second):
            await sync_index(client, index)
            (match,) = index.lookup(hashes)
            assert match.clip_id == clip_id and match.share == 1.0
        assert await client.hexists(FINGERPRINTS, clip_id)
        assert clip_id in await client.lrange(LOG, 0, -1)
    finally:
        await client.aclose()
