"""The visible mark: every rendered video carries its creator's handle, moving over the frame.

The mark is drawn by the encoder (provenance.mark through workers.renderers.encode), so the
real worker's render of a clip differs from an unmarked render of the same spec exactly
where the mark is, and the mark is somewhere else a second later.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import GraphQLClient, purge_render_queue, start_worker

from graph import clips as clip_repo
from provenance.mark import VisibleMark, mark_label
from resolvers.ids import decode_id
from workers.renderers.base import RenderSpec
from workers.renderers.encode import encode_mp4
from workers.renderers.preview import PreviewRenderer

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason video { url } } }"""


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_tasks(settings) -> None:
    purge_render_queue(settings)


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory):
    w = start_worker(settings, tmp_path_factory.mktemp("mark") / "worker.log")
    yield w
    w.stop()


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_the_mark_says_the_handle_and_moves() -> None:
    mark = VisibleMark("@ana_01", 384, 640, 24)
    assert mark.label == mark_label("ana_01") == "AI · @ana_01"
    boxes = {mark.box(i) for i in range(0, 24 * 8, 12)}
    assert len(boxes) > 10  # a new place every half second
    for top, bottom, left, right in boxes:
        assert 0 <= top < bottom <= 640 and 0 <= left < right <= 384
        assert top % 2 == 0 and left % 2 == 0
    with pytest.raises(ValueError):
        VisibleMark("  @ ", 384, 640, 24)


@pytest.mark.parametrize("pixel_format", ["rgb24", "yuv420p"])
def test_the_mark_changes_only_its_own_box(pixel_format: str) -> None:
    h, w = 240, 320
    mark = VisibleMark("bo", w, h, 24)
    shape = (h, w, 3) if pixel_format == "rgb24" else (h * 3 // 2, w)
    frame = np.full(shape, 200, np.uint8)
    marked = mark.apply(frame.copy(), 30, pixel_format)
    top, bottom, left, right = mark.box(30)
    changed = np.argwhere((marked != frame).reshape(marked.shape[0], marked.shape[1], -1).any(2))
    luma_rows = changed[changed[:, 0] < h]
    assert len(luma_rows)
    assert luma_rows[:, 0].min() >= top and luma_rows[:, 0].max() < bottom
    assert luma_rows[:, 1].min() >= left and luma_rows[:, 1].max() < right
    read_only = frame.copy()
    read_only.flags.writeable = False
    assert (mark.apply(read_only, 30, pixel_format) == marked).all()  # a copy, not a crash


def test_every_encode_with_a_handle_is_marked(tmp_path: Path) -> None:
    grey = [np.full((96, 128, 3), 120, np.uint8) for _ in range(12)]
    plain, marked = tmp_path / "plain.mp4", tmp_path / "marked.mp4"
    encode_mp4(iter(grey), plain, fps=12)
    encode_mp4(iter(grey), marked, fps=12, mark="cam")
    a, b = frames_of(plain), frames_of(marked)
    mark = VisibleMark("cam", 128, 96, 12)
    top, bottom, left, right = mark.box(0)
    diff = np.abs(a[0].astype(int) - b[0].astype(int)).mean(axis=2)
    assert diff[top:bottom, left:right].mean() > 20
    outside = diff.copy()
    outside[max(0, top - 8) : bottom + 8, max(0, left - 8) : right + 8] = 0
    assert outside.mean() < 1


async def test_the_workers_render_carries_the_authors_moving_mark(
    gql: GraphQLClient, worker, graph, settings
) -> None:
    ann = await gql.sign_up("marked")
    created = (
        await gql.ok(
            CREATE, {"input": {"prompt": "a red kite over dunes", "durationSeconds": 2}}, ann.token
        )
    )["createClip"]
    draft = await gql.wait_clip(CLIP, ann.token, created["id"], {"DRAFT", "FAILED"})
    assert draft["state"] == "DRAFT", draft["failureReason"]
    raw_id = decode_id(created["id"], "Clip")
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    rendered = frames_of(settings.media_dir / row["videoKey"])

    # the same spec without the mark, through the same renderer and encoder
    spec = RenderSpec(
        clip_id=raw_id,
        prompt=row["prompt"],
        duration_s=int(row["durationS"]),
        moods=tuple(row.get("moods") or ()),
        seed=int(row.get("seed") or 0),
    )
    plain_path = PreviewRenderer().render(spec, lambda _f: None)
    try:
        plain = frames_of(plain_path)
    finally:
        plain_path.unlink()
    assert len(plain) == len(rendered)
    height, width = rendered[0].shape[:2]
    mark = VisibleMark(ann.handle, width, height, 24)
    for index in (0, len(rendered) - 1):
        top, bottom, left, right = mark.box(index)
        diff = np.abs(rendered[index].astype(int) - plain[index].astype(int)).mean(axis=2)
        inside = diff[top:bottom, left:right].mean()
        outside = diff.copy()
        outside[max(0, top - 16) : bottom + 16, max(0, left - 16) : right + 16] = 0
        assert inside > 15 and outside.mean() < 1, (index, inside, outside.mean())
    assert mark.box(0) != mark.box(len(rendered) - 1)  # it moved
