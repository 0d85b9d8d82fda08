"""The reaper's media sweep deletes stored files no clip names, after a grace period, and
never a file a clip names or may yet name; a clip's file goes when the clip is removed.

The render and the sweeps run in threads of their own, as in a worker: the render job and
the reaper drive their own event loops.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path

import pytest
from conftest import GraphQLClient, purge_render_queue

from graph import clips as clip_repo
from graph.driver import driver_for
from media.store import clip_video_key, open_media_store
from resolvers.ids import decode_id
from workers.celery_app import make_celery
from workers.reaper import Reaper
from workers.render_job import RenderRuntime, run_render
from workers.renderers.preview import PreviewRenderer

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"


@pytest.fixture(scope="module", autouse=True)
def _no_tasks_left_behind(settings):
    """This module renders in-process: the tasks createClip queued are not for any worker."""
    purge_render_queue(settings)
    yield
    purge_render_queue(settings)


def _render(settings, clip_id: str) -> str:
    """What a worker process does with a render task, in this thread."""
    loop = asyncio.new_event_loop()
    rt = RenderRuntime(
        graph=driver_for(settings),
        media=open_media_store(settings, None),
        renderer=PreviewRenderer(size=(128, 128)),
        lease_s=60,
        max_attempts=2,
        loop=loop,
    )
    try:
        return run_render(rt, clip_id, "sweep-test-task")
    finally:
        loop.run_until_complete(rt.graph.close())
        loop.close()


def _sweep(settings, grace_s: int) -> list[str]:
    """One media sweep, as the reaper runs it, with this grace period."""
    celery_app = make_celery(settings)
    reaper = Reaper(settings.model_copy(update={"media_orphan_grace_s": grace_s}), celery_app)
    try:
        return reaper.delete_orphans()
    finally:
        reaper.close()
        celery_app.close()


async def _create(gql: GraphQLClient, token: str, prompt: str) -> tuple[str, str]:
    created = (await gql.ok(CREATE, {"input": {"prompt": prompt}}, token))["createClip"]
    return created["id"], decode_id(created["id"], "Clip")


async def test_the_sweep_deletes_only_files_no_clip_names(
    gql: GraphQLClient, graph, settings, tmp_path: Path
) -> None:
    ann = await gql.sign_up("sweep")
    store = open_media_store(settings, None)

    drafted_id, drafted = await _create(gql, ann.token, "a draft with a file")
    assert await asyncio.to_thread(_render, settings, drafted) == "rendered"
    named = (await clip_repo.clips_by_ids(graph, [drafted]))[drafted]["videoKey"]
    mp4 = tmp_path / "copy.mp4"
    shutil.copyfile(settings.media_dir / named, mp4)

    def another_key(clip_id: str) -> str:
        return clip_video_key(clip_id, secrets.token_hex(32))

    # a crash between storing a file and the move to DRAFT leaves a file nobody names
    stray = another_key(drafted)
    # a clip still queued may yet name a file stored for it: never swept
    queued_id, queued = await _create(gql, ann.token, "still queued")
    pending = another_key(queued)
    # a removed clip names its file no more (its deletion failed, say)
    removed_id, removed = await _create(gql, ann.token, "removed")
    await gql.ok(DELETE, {"id": removed_id}, ann.token)
    of_removed = another_key(removed)
    # a file whose clip does not exist at all
    unknown = another_key("01NOSUCHCLIP" + secrets.token_hex(4).upper())
    for key in (stray, pending, of_removed, unknown):
        store.put(mp4, key)
    # something in the store this code base did not write is never touched
    foreign = settings.media_dir / "clips" / drafted / "notes.txt"
    foreign.write_text("not a media key")

    # within the grace period nothing goes: the first sweep only notes the orphans
    assert await asyncio.to_thread(_sweep, settings, 3600) == []
    assert await asyncio.to_thread(_sweep, settings, 3600) == []
    assert all(store.local_path(k) for k in (named, stray, pending, of_removed, unknown))

    deleted = set(await asyncio.to_thread(_sweep, settings, 0))
    assert {stray, of_removed, unknown} <= deleted
    assert not deleted & {named, pending}
    assert store.local_path(named) and store.local_path(pending)
    assert not any(store.local_path(k) for k in (stray, of_removed, unknown))
    assert foreign.read_text() == "not a media key"

    # removing the drafted clip deletes its file at once
    await gql.ok(DELETE, {"id": drafted_id}, ann.token)
    assert store.local_path(named) is None
    assert sorted(p.name for p in (settings.media_dir / "clips" / drafted).iterdir()) == [
        "notes.txt"
    ]
    await gql.ok(DELETE, {"id": queued_id}, ann.token)
    store.delete(pending)
