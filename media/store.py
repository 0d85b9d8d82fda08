"""Where rendered videos live: files under the data folder, or an S3-compatible bucket.

Keys look like clips/<clipId>/<64 hex digits>.mp4, each written once by one render, so the
bytes under a key never change. Workers
put files; the API hands out signed /media links, bound to one viewer and an expiry, only to
viewers allowed to see the clip, and /media checks again before it serves a byte, from
either store (see media/http.py): a link is a bearer's proof of whom it was made for, never
of what they may still play. A clip whose consent was withdrawn no longer names its file,
which the workers' media sweep then deletes like any other file no clip names.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

__all__ = [
    "LocalMediaStore",
    "MediaMissing",
    "MediaStore",
    "S3MediaStore",
    "cameo_ref_key",
    "clip_id_from_key",
    "clip_video_key",
    "open_media_store",
    "sign_media_path",
    "verify_media_signature",
]

_CHUNK = 256 * 1024  # bytes per read while streaming a file to a client

_KEY = re.compile(r"clips/([0-9A-Za-z]{1,64})/([0-9a-f]{64})\.mp4")
# a cameo's encrypted reference frame (consent/references.py); never served by /media
_CAMEO_REF_KEY = re.compile(r"cameos/[0-9A-Za-z]{1,64}/[0-9A-Za-z]{1,64}\.ref")
# a user's data archive (resolvers/account.py); served by /exports only, to that user
EXPORT_KEY = re.compile(r"exports/([0-9A-Za-z]{1,64})/[0-9]{1,16}-[0-9a-f]{12}\.zip")


class MediaMissing(LookupError):
    """Nothing is stored under the key (any more)."""


def clip_video_key(clip_id: str, sha256: str) -> str:
    return f"clips/{clip_id}/{sha256}.mp4"


def cameo_ref_key(cameo_id: str, name: str) -> str:
    return f"cameos/{cameo_id}/{name}.ref"


def clip_id_from_key(key: str) -> str | None:
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def _signature(secret: str, key: str, viewer: str, expires: int) -> str:
    message = f"{key}\n{viewer}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_media_path(secret: str, key: str, viewer_id: str | None, ttl_s: int) -> str:
    """A /media link bound to one viewer and an expiry."""
    viewer = viewer_id or "-"
    expires = int(time.time()) + ttl_s
    query = urlencode(
        {"v": viewer, "exp": expires, "sig": _signature(secret, key, viewer, expires)}
    )
    return f"/media/{key}?{query}"


def verify_media_signature(
    secret: str, key: str, viewer: str, expires: str, signature: str
) -> str | None:
    """The viewer id the link was issued to ('' for anonymous), or None when it is not valid."""
    try:
        expires_at = int(expires)
    except ValueError:
        return None
    if expires_at < time.time():
        return None
    expected = _signature(secret, key, viewer, expires_at).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        return None
    return "" if viewer == "-" else viewer


class MediaStore(Protocol):
    def put(self, source: Path, key: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def keys(self) -> Iterator[str]:
        """Every stored media key (as passed to put), in no particular order."""
        ...

    def size(self, key: str) -> int | None:
        """Bytes stored under key; None when nothing is."""
        ...

    def read(self, key: str, start: int, end: int) -> Generator[bytes, None, None]:
        """Bytes start..end (inclusive) of what is stored under key, in chunks.

        Raises MediaMissing from the first next() when nothing is stored under key.
        """
        ...

    def local_path(self, key: str) -> Path | None: ...

    def url_for(self, key: str, viewer_id: str | None) -> str: ...


class LocalMediaStore:
    def __init__(self, root: Path, secret: str | None, url_ttl_s: int) -> None:
        self.root = root
        self._secret = secret
        self._ttl = url_ttl_s

    def _path(self, key: str) -> Path:
        if (
            clip_id_from_key(key) is None
            and not _CAMEO_REF_KEY.fullmatch(key)
            and not EXPORT_KEY.fullmatch(key)
        ):
            raise ValueError(f"not a media key: {key!r}")
        return self.root / key

    def put(self, source: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # copy beside the target, then rename: readers never see half a file
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        # only finished files: a .part beside one is a put still copying
        for path in self.root.glob("clips/*/*.mp4"):
            key = path.relative_to(self.root).as_posix()
            if clip_id_from_key(key) is not None:
                yield key

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, key: str, start: int, end: int) -> Generator[bytes, None, None]:
        try:
            f = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise MediaMissing(key) from exc
        with f:
            f.seek(start)
            left = end - start + 1
            while left > 0 and (chunk := f.read(min(_CHUNK, left))):
                left -= len(chunk)
                yield chunk

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def url_for(self, key: str, viewer_id: str | None) -> str:
        return sign_media_path(_link_key(self._secret), key, viewer_id, self._ttl)


class S3MediaStore:
    """Any S3-compatible store (AWS, MinIO, R2); needs the `s3` extra (boto3)."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str | None,
        region: str | None,
        secret: str | None,
        url_ttl_s: int,
    ) -> None:
        import boto3  # only deployments that choose S3 install it
        from botocore.exceptions import ClientError

        # credentials come from boto3's own chain (AWS_ACCESS_KEY_ID, profiles, roles)
        self._client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self._client_error = ClientError
        self._bucket = bucket
        self._prefix = prefix
        self._secret = secret
        self._ttl = url_ttl_s

    def put(self, source: Path, key: str) -> None:
        self._client.upload_file(
            str(source), self._bucket, self._prefix + key, ExtraArgs={"ContentType": "video/mp4"}
        )

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=self._prefix + key)

    def keys(self) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix + "clips/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self._prefix) :]
                if clip_id_from_key(key) is not None:
                    yield key

    def size(self, key: str) -> int | None:
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=self._prefix + key)
        except self._client_error as exc:
            if self._missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    @staticmethod
    def _missing(exc: Exception) -> bool:
        return exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}

    def read(self, key: str, start: int, end: int) -> Generator[bytes, None, None]:
        try:
            obj = self._client.get_object(
                Bucket=self._bucket, Key=self._prefix + key, Range=f"bytes={start}-{end}"
            )
        except self._client_error as exc:
            if self._missing(exc):
                raise MediaMissing(key) from exc
            raise
        body = obj["Body"]
        try:
            yield from body.iter_chunks(_CHUNK)
        finally:
            body.close()

    def local_path(self, key: str) -> Path | None:
        return None

    def url_for(self, key: str, viewer_id: str | None) -> str:
        # never a presigned S3 URL: /media re-checks visibility on every fetch
        return sign_media_path(_link_key(self._secret), key, viewer_id, self._ttl)


def _link_key(secret: str | None) -> str:
    if secret is None:
        raise RuntimeError("this process holds no media link key: only API processes make links")
    return secret


def open_media_store(settings: object, secret: str | None) -> MediaStore:
    """The store the settings name. `secret` is the media link key (server.resolve_media_key):
    API processes pass it; workers pass None, and their store can store and read files but
    never sign a link."""
    if settings.media_store == "s3":
        if not settings.s3_bucket:
            raise ValueError("REELGRAPH_S3_BUCKET is required when REELGRAPH_MEDIA_STORE=s3")
        return S3MediaStore(
            settings.s3_bucket,
            settings.s3_prefix,
            settings.s3_endpoint_url,
            settings.s3_region,
            secret,
            settings.media_url_ttl_s,
        )
    return LocalMediaStore(settings.media_dir, secret, settings.media_url_ttl_s)
