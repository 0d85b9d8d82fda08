"""All configuration: environment variables prefixed REELGRAPH_ (and an optional .env).

Every default serves the embedded mode, so a fresh checkout runs with no set-up.
Nothing else in the code base reads the environment: call get_settings().
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


def _usable_cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REELGRAPH_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("reelgraph-data")
    # API processes of `reelgraph serve` and `run` on the one port, over the one engine
    # (`--workers N` overrides): one per usable core, at most 4 by default
    api_processes: int = Field(default_factory=lambda: min(_usable_cores(), 4), ge=1, le=64)

    # embedded: | bolt://user:pass@host:7687 | neo4j://... | neo4j+s://... | falkor://host:6379
    graph_url: str = "embedded:"
    graph_name: str = "reelgraph"  # FalkorDB graph key; ignored by Neo4j
    neo4j_database: str = "neo4j"
    # Neo4j over Bolt, in seconds: opening a connection, waiting for one from the pool, and
    # one statement (server-side timeout and a client-side deadline, retries included)
    graph_connection_timeout_s: float = 5.0
    graph_acquisition_timeout_s: float = 10.0
    graph_transaction_timeout_s: float = 30.0
    # None: the embedded server's redis (a unix socket under data_dir)
    redis_url: str | None = None
    redis_max_connections: int = 100  # per API process; more requests wait for one
    redis_pool_timeout_s: float = 10.0  # waiting longer for a connection is an error
    broker_url: str | None = None  # Celery broker; defaults to redis_url

    secret_key: str | None = None  # signs access tokens; generated under data_dir when unset
    # signs /media links, apart from secret_key; generated under data_dir when unset. API
    # processes only: workers store files but never make links, so they hold neither key
    media_link_key: str | None = None
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    media_url_ttl_s: int = 3600

    # consent tokens (PASETO v4.public, consent/keyring.py): JSON documents; unset, API
    # processes generate <data_dir>/consent/signing-keys.json and publish public-keys.json
    consent_signing_keys: str | None = None  # API processes only; never give it to workers
    consent_public_keys: str | None = None  # what workers verify with
    consent_issuer: str = "reelgraph"
    # a render token must outlive queueing, retries and requeues of its render
    render_token_ttl_s: int = 6 * 3600
    approval_token_ttl_s: int = 30 * 24 * 3600
    # key-encryption keys (consent/envelope.py), which wrap each cameo's data key: a ring of
    # `id:base64` (32 bytes each), newest first, as a comma list or JSON; the single
    # cameo_kek (base64) is one more, older key of it; cameo_kek_current names the KEK that
    # wraps new keys (default: the first). Unset: <data_dir>/consent/kek (development only)
    cameo_keks: str | None = None
    cameo_kek: str | None = None
    cameo_kek_current: str | None = None
    # a cameo capture upload (3-15 s): room for 15 s of 4K phone video; reading stops past it
    capture_max_bytes: int = 200 * 1024 * 1024
    # a liveness challenge must be uploaded within this; one upload per challenge
    cameo_challenge_ttl_s: int = 300
    # captures (challenges issued) per user per window; 0 turns the limit off
    cameo_capture_limit_per_user: int = 5
    cameo_capture_window_s: int = 3600
    cameo_verify_time_limit_s: int = 120  # one capture's verification in the worker
    # capture checks: their own Celery worker (the cameos queue), each check in a confined
    # child process (workers.sandbox)
    capture_worker_concurrency: int = 1  # checks at once, beside (never in) render slots
    # one check's child, start to verdict (kept 15 s inside cameo_verify_time_limit_s); its
    # CPU limit is this times the decoder's 2 threads
    capture_sandbox_wall_s: int = 90
    capture_sandbox_memory_mb: int = 1536  # the child's address space, libraries included
    capture_sandbox_hold_file: str | None = None  # tests only: the child waits for this file

    # rate limits, counted in Redis so they hold across API processes; 0 turns one off
    # log-in (auth/rate_limits.py): what is refused is counted per client address, so an
    # address that has not failed is never refused: failed attempts per handle and address,
    # and per address whatever the handle. Per handle the limit is soft: past this many
    # failures in a window, an attempt from an address the handle never signed in from
    # waits (login_delay_base_s, doubling with each failure, at most login_delay_max_s)
    login_limit_per_handle: int = 10
    login_limit_per_handle_address: int = 10  # failed log-ins per handle per address
    login_limit_per_address: int = 30  # failed log-ins per client address per window
    login_limit_window_s: int = 15 * 60
    login_delay_base_s: Annotated[float, Field(ge=0, le=60)] = 0.5
    login_delay_max_s: Annotated[float, Field(ge=0, le=60)] = 8.0
    signup_limit_per_address: int = 5
    signup_limit_window_s: int = 3600
    mutation_limit_per_user: int = 120  # mutation fields a signed-in user may run per window
    mutation_limit_window_s: int = 60
    # generation quotas (auth/quotas.py), counted in Redis across API processes: createClip
    # calls (remixes too) per user per UTC day (a render that ends FAILED gives its unit
    # back), and clips one user may have QUEUED or RENDERING at once
    daily_generations: Annotated[int, Field(ge=1, le=1_000_000)] = 30
    max_active_renders_per_user: Annotated[int, Field(ge=1, le=10_000)] = 3
    # proxies (IPs or CIDRs, comma-separated; "unix": a peer on a unix socket) whose
    # X-Forwarded-For names the client address; unknown addresses share one allowance
    trusted_proxies: Annotated[list[str], NoDecode] = []

    # one limit for a request body over HTTP and a frame over a websocket (uvicorn's own
    # default for frames was 16 MiB); the capture upload route streams with its own cap
    max_request_bytes: int = 10_000_000
    # GraphQL limits
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    max_page_size: int = 100
    # checked before validation, whose overlapping-fields check costs the square of these
    max_fields: int = 500  # field selections in a document, with its fragments expanded
    max_same_name_fields: int = 20  # selections sharing one response name in one selection
    document_cache_size: int = 512  # parsed and validated documents kept (LRU)
    # queries run through a plan compiled once per document (schema/fast_path.py): "on",
    # "off" (graphql-core's interpreter only) or "verify" (both, compared: the test suite)
    fast_path: Literal["on", "off", "verify"] = "on"
    # introspection and "Did you mean" suggestions: "on", "signed-in" or "off";
    # unset: "on" in development, "signed-in" in production
    introspection: Literal["on", "signed-in", "off"] | None = None
    # which documents run (transport/persisted.py): "any" (text, automatic persisted
    # queries, trusted ids) or "trusted" (only the trusted documents of `reelgraph documents`)
    documents: Literal["any", "trusted"] = "any"

    # websockets (graphql-transport-ws); open sockets are counted in Redis, across processes
    max_sockets_per_user: int = 8
    max_anonymous_sockets_per_address: int = 8  # sockets without a token, per client address
    max_operations_per_socket: int = 50  # in flight at once; the next gets RATE_LIMITED
    socket_lease_s: int = 60  # a socket's entry in that count, renewed while it is open
    socket_ping_interval_s: float = 15.0  # graphql-transport-ws pings to idle sockets; 0: none
    # undelivered events one subscription may hold; one more closes its socket (slow client)
    subscription_queue_size: int = 256
    # a live subscription re-reads its source this often even without a doorbell
    subscription_resync_s: float = 30.0

    # rendering
    # "preview", "diffusers" (LTX-Video, video only), "diffusers-av" (LTX-2: video with its
    # own synchronized audio), or a renderer class by import path ("package.module:Class")
    renderer: str = Field(
        "preview", pattern=r"^(preview|diffusers|diffusers-av|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"
    )
    model: str = "Lightricks/LTX-Video-0.9.7-distilled"
    av_model: str = "diffusers/LTX-2.3-Distilled-Diffusers"  # the diffusers-av renderer's
    diffusers_resolution: str = "768x512"  # height x width, multiples of 32 (LTX buckets)
    diffusers_steps: int = 8
    render_soft_time_limit_s: int = 600
    render_time_limit_s: int = 660
    # longer than the hard limit, so a message is never redelivered while it still renders
    render_visibility_timeout_s: int = 900
    render_lease_s: int = 60
    render_max_retries: int = 3
    # backoff before retrying a transient failure (graph, Redis, full disk, GPU memory): doubles
    render_retry_backoff_s: float = 2.0
    # a stored file no clip points to is deleted once it has been seen orphaned this long
    media_orphan_grace_s: int = 3600
    worker_concurrency: int = 1
    # the reaper re-queues clips whose render task was lost; a duplicate task is harmless
    reaper_interval_s: int = 60
    requeue_after_s: int = 1800  # a QUEUED clip untouched this long gets its task again
    with_worker: bool = True  # `reelgraph run` starts a worker beside the server

    # media
    media_store: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_prefix: str = "media/"

    # provenance (provenance/): the PEM chain that signs published clips' C2PA manifests
    # (signing certificate first, with an extended key usage; not self-signed) and its PEM
    # private key, as file paths; unset in development, a chain is generated under
    # <data_dir>/provenance. trust_anchors: the PEM roots `reelgraph verify` and
    # POST /provenance/verify accept as this server's (default: the chain's last certificate)
    provenance_cert_chain: Path | None = None
    provenance_private_key: Path | None = None
    provenance_trust_anchors: Path | None = None
    provenance_verify_max_bytes: int = 200 * 1024 * 1024  # an upload to POST /provenance/verify

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def is_embedded(self) -> bool:
        return self.graph_url.startswith("embedded:")

    @property
    def diffusers_size(self) -> tuple[int, int]:
        height, _, width = self.diffusers_resolution.lower().partition("x")
        return int(height), int(width)

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
