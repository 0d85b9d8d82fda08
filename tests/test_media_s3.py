"""The S3 store keeps the local store's promises, against moto's S3-compatible server started
here (no AWS network): a real worker puts the render into the bucket, the link a client gets
is our signed /media link (never a presigned S3 URL), visibility is checked when the link is
made and again when it is fetched, /media streams ranges from the bucket, and delete() and
keys() do what they say."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import Account, GraphQLClient, free_port, purge_render_queue, start_worker
from litestar.testing import AsyncTestClient
from moto.server import ThreadedMotoServer

from media.store import S3MediaStore, clip_video_key, open_media_store
from server import build_app

CREATE = "mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"
CLIP = "query($id: ID!) { clip(id: $id) { id state failureReason video { url sha256 } } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
BUCKET = "reelgraph-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3:
    endpoint: str
    client: Any  # a boto3 S3 client, to look into the bucket behind the store's back

    def object_keys(self) -> set[str]:
        listed = self.client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return {item["Key"] for item in listed}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # boto3 reads credentials from the standard variables, in this process and the worker's
    with pytest.MonkeyPatch.context() as env:
        for name, value in CREDENTIALS.items():
            env.setenv(name, value)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield S3(endpoint, client)
    server.stop()


@pytest.fixture(scope="module")
def s3_settings(settings, s3: S3):
    return settings.model_copy(
        update={
            "media_store": "s3",
            "s3_bucket": BUCKET,
            "s3_endpoint_url": s3.endpoint,
            "s3_region": "us-east-1",
        }
    )


@pytest.fixture(scope="module")
async def s3_gql(s3_settings) -> AsyncIterator[GraphQLClient]:
    """The API with the S3 store, on the session's graph and Redis."""
    async with AsyncTestClient(app=build_app(s3_settings)) as client:
        yield GraphQLClient(client)


@pytest.fixture(scope="module")
def s3_worker(settings, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    purge_render_queue(settings)  # never render other modules' leftovers into the bucket
    w = start_worker(
        settings,
        tmp_path_factory.mktemp("s3-worker") / "worker.log",
        REELGRAPH_MEDIA_STORE="s3",
        REELGRAPH_S3_BUCKET=BUCKET,
        REELGRAPH_S3_ENDPOINT_URL=s3.endpoint,
        REELGRAPH_S3_REGION="us-east-1",
        **CREDENTIALS,
    )
    yield
    w.stop()


@dataclass
class Published:
    author: Account
    viewer: Account
    clip_id: str
    key: str
    sha256: str
    data: bytes  # the object in the bucket


async def wait_state(
    gql: GraphQLClient, token: str, clip_id: str, states: set[str], within_s: float = 90
) -> dict:
    return await gql.wait_clip(CLIP, token, clip_id, states, within_s)


@pytest.fixture(scope="module")
async def draft(s3_gql: GraphQLClient, s3: S3, s3_worker) -> Published:
    """A clip the worker rendered into the bucket, still a DRAFT."""
    author, viewer = await s3_gql.sign_up("s3author"), await s3_gql.sign_up("s3viewer")
    created = (await s3_gql.ok(CREATE, {"input": {"prompt": "tide pools"}}, author.token))[
        "createClip"
    ]
    clip = await wait_state(s3_gql, author.token, created["id"], {"DRAFT", "FAILED"})
    assert clip["state"] == "DRAFT", clip["failureReason"]
    key = urlsplit(clip["video"]["url"]).path.removeprefix("/media/")
    body = s3.client.get_object(Bucket=BUCKET, Key="media/" + key)["Body"].read()
    return Published(author, viewer, created["id"], key, clip["video"]["sha256"], body)


async def link_for(gql: GraphQLClient, draft: Published, viewer: Account) -> str:
    clip = (await gql.ok(CLIP, {"id": draft.clip_id}, viewer.token))["clip"]
    return clip["video"]["url"]


async def stored_now(gql: GraphQLClient, s3: S3, draft: Published) -> tuple[str, bytes]:
    """The clip's file as the bucket holds it now: the render while a draft, the signed copy
    once published (provenance.publish stores it under a key of its own)."""
    key = urlsplit(await link_for(gql, draft, draft.author)).path.removeprefix("/media/")
    return key, s3.client.get_object(Bucket=BUCKET, Key="media/" + key)["Body"].read()


async def test_the_render_is_in_the_bucket_and_not_on_disk(draft: Published, settings) -> None:
    assert not (settings.media_dir / draft.key).exists()
    assert len(draft.data) > 1000


async def test_the_link_is_ours_and_checked_when_made_and_when_fetched(
    s3_gql: GraphQLClient, s3: S3, draft: Published
) -> None:
    http = s3_gql.client
    # made: a draft is its author's alone; nobody else gets a link at all
    assert (await s3_gql.ok(CLIP, {"id": draft.clip_id}, draft.viewer.token))["clip"] is None
    url = await link_for(s3_gql, draft, draft.author)
    assert urlsplit(url).path == f"/media/{draft.key}"
    assert s3.endpoint not in url and "amz" not in url.lower()  # never a presigned S3 URL

    await s3_gql.ok(PUBLISH, {"id": draft.clip_id}, draft.author.token)
    theirs = (await s3_gql.ok(CLIP, {"id": draft.clip_id}, draft.viewer.token))["clip"]
    link = theirs["video"]["url"]
    signed_key, signed = await stored_now(s3_gql, s3, draft)
    assert signed_key != draft.key and urlsplit(link).path == f"/media/{signed_key}"
    response = await http.get(link, headers={"Range": "bytes=0-99"})
    assert response.status_code == 206 and response.content == signed[:100]

    # fetched: once the author blocks them, the same unexpired link serves nothing
    await s3_gql.ok(BLOCK, {"id": draft.viewer.id}, draft.author.token)
    for method in ("GET", "HEAD"):
        refused = await http.request(method, link, headers={"Range": "bytes=0-99"})
        assert refused.status_code == 404 and refused.headers["cache-control"] == "no-store"
    # and no new link is made for them
    assert (await s3_gql.ok(CLIP, {"id": draft.clip_id}, draft.viewer.token))["clip"] is None


async def test_media_streams_ranges_from_the_bucket(
    s3_gql: GraphQLClient, s3: S3, draft: Published
) -> None:
    http = s3_gql.client
    url = await link_for(s3_gql, draft, draft.author)
    _, data = await stored_now(s3_gql, s3, draft)
    sha256 = hashlib.sha256(data).hexdigest()  # the served file's: the signed copy's once published
    size = len(data)
    whole = await http.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"] == f'"{sha256}"'
    assert whole.headers["cache-control"].startswith("private, max-age=")

    for header, expected, content_range in (
        ("bytes=10-19", data[10:20], f"bytes 10-19/{size}"),
        ("bytes=-30", data[-30:], f"bytes {size - 30}-{size - 1}/{size}"),
        (f"bytes={size - 5}-", data[-5:], f"bytes {size - 5}-{size - 1}/{size}"),
    ):
        part = await http.get(url, headers={"Range": header})
        assert part.status_code == 206 and part.content == expected, header
        assert part.headers["content-range"] == content_range

    past = await http.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    head = await http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)
    cached = await http.get(url, headers={"If-None-Match": f'"{sha256}"'})
    assert cached.status_code == 304 and cached.content == b""


async def test_delete_removes_the_object_and_keys_lists_what_is_there(
    s3_gql: GraphQLClient, s3: S3, s3_settings, draft: Published, tmp_path: Path
) -> None:
    store = open_media_store(s3_settings, "s" * 32)
    assert isinstance(store, S3MediaStore)
    key, _ = await stored_now(s3_gql, s3, draft)
    assert key in set(store.keys())

    source = tmp_path / "orphan.mp4"
    source.write_bytes(b"not really a video")
    orphan = clip_video_key("ORPHAN", "e" * 64)
    store.put(source, orphan)
    assert {key, orphan} <= set(store.keys())
    assert store.size(orphan) == len(b"not really a video")
    store.delete(orphan)
    store.delete(orphan)  # deleting twice is harmless
    assert orphan not in set(store.keys())
    assert "media/" + orphan not in s3.object_keys()
    with pytest.raises(ClientError):
        s3.client.head_object(Bucket=BUCKET, Key="media/" + orphan)

    # a link to a file that is gone is a plain 404, whatever the graph still says
    url = await link_for(s3_gql, draft, draft.author)
    store.delete(key)
    assert store.size(key) is None and key not in set(store.keys())
    gone = await s3_gql.client.get(url, headers={"Range": "bytes=0-9"})
    assert gone.status_code == 404 and gone.headers["cache-control"] == "no-store"
