"""Accounts and the follow graph: sign-up, log-in, tokens, follows, blocks, lists."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import unicodedata
from typing import TYPE_CHECKING

from ulid import ULID

from auth.addresses import IPAddress, client_address
from auth.passwords import hash_password, verify_password
from auth.rate_limits import RateLimits
from auth.tokens import TokenPair
from errors import BadUserInput, Conflict, Forbidden, NotFound, Unauthenticated
from graph import users as user_repo
from resolvers.ids import decode_id
from resolvers.loaders import FollowPageKey
from resolvers.notifications import new_follower as notify_new_follower
from resolvers.pagination import Page, make_page, page_size, time_id_cursor

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "block_user",
    "follow",
    "follow_page",
    "log_in",
    "normalize_handle",
    "refresh",
    "sign_up",
    "unfollow",
    "user_by_handle",
]

_HANDLE = re.compile(r"[a-z0-9_]{3,30}")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
MAX_DISPLAY_NAME = 50


def now_ms() -> int:
    return int(time.time() * 1000)


def normalize_handle(handle: str) -> str:
    """Handles are case-insensitive: stored and compared in lower case."""
    normalized = handle.strip().lower()
    if not _HANDLE.fullmatch(normalized):
        raise BadUserInput("a handle is 3-30 characters of a-z, 0-9 and _")
    return normalized


def _display_name(name: str) -> str:
    cleaned = unicodedata.normalize("NFC", name.strip())
    if not 1 <= len(cleaned) <= MAX_DISPLAY_NAME:
        raise BadUserInput(f"a display name is 1-{MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in cleaned):
        raise BadUserInput("a display name may not contain control characters")
    return cleaned


def _password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadUserInput(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadUserInput(f"a password has at most {MAX_PASSWORD} characters")
    return password


def _client_address(ctx: Context) -> IPAddress | None:
    connection = ctx.request or ctx.websocket
    if connection is None:
        return None
    return client_address(connection.scope, ctx.settings.trusted_proxies)


async def sign_up(ctx: Context, handle: str, display_name: str, password: str) -> TokenPair:
    handle = normalize_handle(handle)
    display_name = _display_name(display_name)
    _password(password)
    # input a person mistyped is not counted; every well-formed attempt is, taken or not
    await RateLimits(ctx.services.redis, ctx.settings).sign_up_attempt(_client_address(ctx))
    password_hash = await hash_password(password)
    user = await user_repo.create_user(
        ctx.services.graph,
        id=str(ULID()),
        handle=handle,
        display_name=display_name,
        password_hash=password_hash,
        now=now_ms(),
    )
    if user is None:
        raise Conflict(f"the handle @{handle} is taken")
    ctx.loaders.user_by_id.prime(user["id"], user)
    return await ctx.services.tokens.issue(user["id"])


async def log_in(ctx: Context, handle: str, password: str) -> TokenPair:
    wrong = Unauthenticated("wrong handle or password")
    try:
        normalized: str | None = normalize_handle(handle)
    except BadUserInput:
        normalized = None  # no account has it; the attempt still counts for the address
    limits = RateLimits(ctx.services.redis, ctx.settings)
    address = _client_address(ctx)
    # refused only for failures from this very address (auth.rate_limits): an attacker
    # elsewhere cannot lock the owner out
    await limits.log_in_attempt(normalized, address)
    if normalized is None or len(password) > MAX_PASSWORD:
        raise wrong
    # the handle's own limit is soft: a growing wait for addresses it never signed in from
    delay = await limits.log_in_delay(normalized, address)
    if delay > 0:
        await asyncio.sleep(delay)
    credentials = await user_repo.credentials_by_handle(ctx.services.graph, normalized)
    stored_hash = credentials["passwordHash"] if credentials else None
    if not await verify_password(stored_hash, password) or credentials is None:
        await limits.log_in_failed(normalized)
        raise wrong
    await limits.log_in_succeeded(normalized, address)
    return await ctx.services.tokens.issue(credentials["id"])


async def refresh(ctx: Context, refresh_token: str) -> TokenPair:
    pair = await ctx.services.tokens.rotate(refresh_token)
    if await ctx.loaders.user_by_id.load(pair.user_id) is None:
        raise Unauthenticated("this account no longer exists")
    return pair


async def user_by_handle(ctx: Context, handle: str) -> dict | None:
    try:
        handle = normalize_handle(handle)
    except BadUserInput:
        return None  # no user can have it
    found = await user_repo.users_by_handles(ctx.services.graph, [handle])
    user = found.get(handle)
    if user is not None:
        ctx.loaders.user_by_id.prime(user["id"], user)
    return user


async def _target(ctx: Context, user_id: str) -> tuple[str, str]:
    viewer_id = ctx.require_viewer()
    target_id = decode_id(user_id, "User")
    if target_id == viewer_id:
        raise BadUserInput("you cannot do this to yourself")
    return viewer_id, target_id


async def _explain_refusal(ctx: Context, viewer_id: str, target_id: str) -> None:
    relation = await user_repo.relation_between(ctx.services.graph, viewer_id, target_id)
    if not relation["exists"]:
        raise NotFound("no such user")
    if relation["blockedByTarget"]:
        raise Forbidden("this user has blocked you")
    if relation["blocksTarget"]:
        raise Forbidden("you have blocked this user; unblock them first")
    raise NotFound("no such user")


async def follow(ctx: Context, user_id: str) -> dict:
    viewer_id, target_id = await _target(ctx, user_id)
    if not await user_repo.follow(ctx.services.graph, viewer_id, target_id, now_ms()):
        await _explain_refusal(ctx, viewer_id, target_id)
    _forget_follow_state(ctx, viewer_id, target_id)
    await notify_new_follower(ctx, viewer_id, target_id, now_ms())
    return await _load_user(ctx, target_id)


async def unfollow(ctx: Context, user_id: str) -> dict:
    viewer_id, target_id = await _target(ctx, user_id)
    await user_repo.unfollow(ctx.services.graph, viewer_id, target_id)
    _forget_follow_state(ctx, viewer_id, target_id)
    return await _load_user(ctx, target_id)


async def block_user(ctx: Context, user_id: str) -> dict:
    viewer_id, target_id = await _target(ctx, user_id)
    if not await user_repo.block_user(ctx.services.graph, viewer_id, target_id, now_ms()):
        raise NotFound("no such user")
    _forget_follow_state(ctx, viewer_id, target_id)
    return await _load_user(ctx, target_id)


def _forget_follow_state(ctx: Context, *user_ids: str) -> None:
    """A follow graph write: later fields in the same document must not see cached counts."""
    for loader in (ctx.loaders.follow_counts_by_user, ctx.loaders.viewer_follows_by_user):
        for user_id in user_ids:
            with contextlib.suppress(KeyError):  # nothing cached for it yet
                loader.clear(user_id)
    ctx.loaders.follow_page_by_user.clear_all()  # pages are keyed by more than the user


async def _load_user(ctx: Context, user_id: str) -> dict:
    user = await ctx.loaders.user_by_id.load(user_id)
    if user is None:
        raise NotFound("no such user")
    return user


async def follow_page(
    ctx: Context, user_id: str, direction: str, first: int | None, after: str | None
) -> Page[dict]:
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    key = FollowPageKey(user_id, direction, limit + 1, cursor)
    rows = await ctx.loaders.follow_page_by_user.load(key)
    for row in rows:
        ctx.loaders.user_by_id.prime(row["user"]["id"], row["user"])
    page = make_page(rows, limit, key=lambda row: (row["at"], row["user"]["id"]))
    return Page([(c, row["user"]) for c, row in page.items], page.has_next_page)
