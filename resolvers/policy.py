"""The policy registries over GraphQL: admins mark rights holders and keep the public-figure
registry; rights holders register, license and withdraw their works, characters and marks.

Every edit is appended to the audit log (graph.audit) once it is written. consent.policy
enforces both registries on prompts; this module only keeps them.
"""

from __future__ import annotations

import time
import unicodedata
from typing import TYPE_CHECKING

from ulid import ULID

from consent.policy import figure_key, normalize_figure, work_key
from errors import BadUserInput, Conflict, Forbidden, NotFound
from graph import audit
from graph import public_figures as figure_repo
from graph import rights_holders as work_repo
from resolvers.ids import decode_id
from resolvers.pagination import Page, make_page, page_size, time_id_cursor

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "KINDS",
    "add_public_figure",
    "license_work",
    "licensed_works",
    "licensees",
    "my_works",
    "public_figures",
    "register_work",
    "remove_public_figure",
    "revoke_license",
    "set_rights_holder",
    "withdraw_work",
]

KINDS = ("WORK", "CHARACTER", "MARK")
MAX_NAME_CHARS = 100  # a name or an alias
MAX_ALIASES = 20
MAX_TERMS_CHARS = 4000
MAX_WORKS_PER_HOLDER = 1000  # every entry is compiled into each API process's matcher
MIN_KEY_CHARS = 2  # one letter would catch every prompt holding it as a word


def _now() -> int:
    return int(time.time() * 1000)


def _user_id(ctx: Context, global_id: str) -> str:
    return decode_id(global_id, "User")


async def _existing_user(ctx: Context, global_id: str) -> dict:
    row = await ctx.loaders.user_by_id.load(_user_id(ctx, global_id))
    if row is None:
        raise NotFound("no such user")
    return row


def _no_controls(text: str, what: str, allowed: str = "") -> None:
    if any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text):
        raise BadUserInput(f"{what} must not hold control characters")


def _name(text: str, what: str) -> str:
    """A name or alias as stored: one space between words; BAD_USER_INPUT when it is empty,
    too long, has no letters, or is too short for the matcher to read it safely."""
    _no_controls(text, what)
    name = " ".join(text.split())
    if not name:
        raise BadUserInput(f"{what} is empty")
    if len(name) > MAX_NAME_CHARS:
        raise BadUserInput(f"{what} is longer than {MAX_NAME_CHARS} characters")
    if not any(ch.isalpha() for ch in name):
        raise BadUserInput(f"{what} has no letters")
    if len(work_key(name)) < MIN_KEY_CHARS:
        raise BadUserInput(f"{what} needs at least {MIN_KEY_CHARS} letters or digits")
    return name


# --- rights holders: marked by admins ---------------------------------------------------------


async def set_rights_holder(ctx: Context, user_id: str, enabled: bool) -> tuple[dict, int]:
    """(the user, how many entries an unmarking withdrew). Unmarking withdraws every entry
    the account holds, with their licences: an unmarked account protects nothing."""
    admin_id = await ctx.require_role("ADMIN")
    raw_id = _user_id(ctx, user_id)
    row = await work_repo.set_rights_holder(ctx.services.graph, raw_id, enabled)
    if row is None:
        raise NotFound("no such user")
    if bool(row["before"]) != enabled or row["withdrawn"]:
        await audit.append(
            ctx.services.graph,
            actor_id=admin_id,
            action="registry.rights_holder." + ("mark" if enabled else "unmark"),
            subject=raw_id,
            details={"withdrawnWorks": row["withdrawn"]} if not enabled else None,
        )
    user = await ctx.loaders.user_by_id.load(raw_id)
    if user is None:
        raise NotFound("no such user")
    return user, len(row["withdrawn"])


async def _require_holder(ctx: Context) -> str:
    viewer_id = ctx.require_viewer()
    if not await work_repo.holder_state(ctx.services.graph, viewer_id):
        raise Forbidden("only an account an admin marked as a rights holder may do this")
    return viewer_id


# --- rights holders: their entries ------------------------------------------------------------


async def register_work(
    ctx: Context, kind: str, name: str, aliases: list[str] | None, terms: str | None
) -> dict:
    """A new entry. BAD_USER_INPUT for a bad name, alias or terms; CONFLICT when one of its
    names reads as a name of any entry already registered, by any holder."""
    holder_id = await _require_holder(ctx)
    if kind not in KINDS:
        raise BadUserInput(f"kind must be one of {', '.join(KINDS)}")
    name = _name(name, "the name")
    aliases = list(aliases or [])
    if len(aliases) > MAX_ALIASES:
        raise BadUserInput(f"an entry has at most {MAX_ALIASES} aliases")
    keys = [work_key(name)]
    kept: list[str] = []
    for alias in aliases:
        alias = _name(alias, "an alias")
        if work_key(alias) not in keys:  # a repeat of the name or of another alias
            keys.append(work_key(alias))
            kept.append(alias)
    terms = (terms or "").strip()
    _no_controls(terms, "the terms", allowed="\n\t\r")
    if len(terms) > MAX_TERMS_CHARS:
        raise BadUserInput(f"the terms are longer than {MAX_TERMS_CHARS} characters")

    db = ctx.services.graph
    work = await work_repo.register_work(
        db,
        id=str(ULID()),
        holder_id=holder_id,
        kind=kind,
        name=name,
        aliases=kept,
        terms=terms,
        keys=keys,
        max_works=MAX_WORKS_PER_HOLDER,
        now=_now(),
    )
    if work is None:
        why = await work_repo.register_refusal(db, holder_id, keys)
        if not why["holder"]:  # unmarked meanwhile
            raise Forbidden("only an account an admin marked as a rights holder may do this")
        if why["clashes"]:
            raise Conflict(
                "a protected work with this name or one of these aliases is registered "
                "already; nothing was registered"
            )
        raise BadUserInput(f"a rights holder registers at most {MAX_WORKS_PER_HOLDER} entries")
    await audit.append(
        db,
        actor_id=holder_id,
        action="registry.protected_work.register",
        subject=work["id"],
        details={"kind": kind, "aliases": len(kept)},
    )
    return work


def _work_id(work_id: str) -> str:
    return decode_id(work_id, "ProtectedWork")


def _not_yours() -> NotFound:
    return NotFound("you hold no protected work with this ID")


async def withdraw_work(ctx: Context, work_id: str) -> dict:
    """The entry, withdrawn: prompts may use it again."""
    holder_id = await _require_holder(ctx)
    work = await work_repo.withdraw_work(ctx.services.graph, _work_id(work_id), holder_id)
    if work is None:
        raise _not_yours()
    await audit.append(
        ctx.services.graph,
        actor_id=holder_id,
        action="registry.protected_work.withdraw",
        subject=work["id"],
    )
    return work


def _licensee(user_id: str | None, everyone: bool | None) -> str | None:
    """The user a licence names (None: everyone); BAD_USER_INPUT unless exactly one."""
    if (user_id is None) == (everyone is not True):
        raise BadUserInput("name either a userId or everyone: true")
    return user_id


async def license_work(
    ctx: Context, work_id: str, user_id: str | None, everyone: bool | None
) -> dict:
    """The entry, licensed to one user or to everyone (granted already: unchanged)."""
    holder_id = await _require_holder(ctx)
    target = _licensee(user_id, everyone)
    raw_work = _work_id(work_id)
    db = ctx.services.graph
    if target is None:
        answer = await work_repo.license_everyone(db, raw_work, holder_id, True)
        if answer is None:
            raise _not_yours()
        work, changed = answer
        details = {"everyone": True}
    else:
        user = await _existing_user(ctx, target)
        if user["id"] == holder_id:
            raise BadUserInput("you hold this work: your own prompts may use it already")
        answer = await work_repo.license_user(db, raw_work, holder_id, user["id"], _now())
        if answer is None:
            raise _not_yours()
        work, changed = answer
        details = {"licenseeId": user["id"]}
    if changed:
        await audit.append(
            db,
            actor_id=holder_id,
            action="registry.protected_work.license",
            subject=work["id"],
            details=details,
        )
    return work


async def revoke_license(
    ctx: Context, work_id: str, user_id: str | None, everyone: bool | None
) -> dict:
    """The entry, its licence to one user or to everyone taken back (none: unchanged)."""
    holder_id = await _require_holder(ctx)
    target = _licensee(user_id, everyone)
    raw_work = _work_id(work_id)
    db = ctx.services.graph
    if target is None:
        answer = await work_repo.license_everyone(db, raw_work, holder_id, False)
        details = {"everyone": True}
    else:
        raw_user = _user_id(ctx, target)
        answer = await work_repo.revoke_user_licence(db, raw_work, holder_id, raw_user)
        details = {"licenseeId": raw_user}
    if answer is None:
        raise _not_yours()
    work, changed = answer
    if changed:
        await audit.append(
            db,
            actor_id=holder_id,
            action="registry.protected_work.revoke_license",
            subject=work["id"],
            details=details,
        )
    return work


async def my_works(ctx: Context, first: int | None, after: str | None) -> Page[dict]:
    """The viewer's entries, newest first (none for an account that is no rights holder)."""
    viewer_id = ctx.require_viewer()
    limit = page_size(first, ctx.settings.max_page_size)
    rows = await work_repo.works_page(
        ctx.services.graph, viewer_id, time_id_cursor(after), limit + 1
    )
    return make_page(rows, limit, key=lambda work: (work["createdAt"], work["id"]))


async def licensed_works(ctx: Context, first: int | None, after: str | None) -> Page[dict]:
    """The entries the viewer may use by licence (to them or to everyone), newest first,
    with their terms."""
    viewer_id = ctx.require_viewer()
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    rows = await work_repo.licensed_page(ctx.services.graph, viewer_id, cursor, limit + 1)
    return make_page(rows, limit, key=lambda work: (work["createdAt"], work["id"]))


async def licensees(ctx: Context, work: dict, first: int | None, after: str | None) -> Page[dict]:
    """The users the entry is licensed to by name, latest licence first; its holder only."""
    if ctx.require_viewer() != work["holderId"]:
        raise Forbidden("only the rights holder may see who holds a licence")
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    rows = await work_repo.licensees_page(ctx.services.graph, work["id"], cursor, limit + 1)
    page = make_page(rows, limit, key=lambda row: (row["at"], row["id"]))
    users = await ctx.loaders.user_by_id.load_many([row["id"] for _, row in page.items])
    return Page(
        [(c, user) for (c, _), user in zip(page.items, users, strict=True) if user is not None],
        page.has_next_page,
    )


# --- public figures: kept by admins -----------------------------------------------------------


async def add_public_figure(
    ctx: Context, name: str, aliases: list[str] | None, user_id: str | None
) -> dict:
    """A new public figure, read as `reelgraph policy public-figure add` reads one
    (consent.policy.normalize_figure). CONFLICT when its name is registered already."""
    admin_id = await ctx.require_role("ADMIN")
    aliases = list(aliases or [])
    if len(aliases) > MAX_ALIASES:
        raise BadUserInput(f"a public figure has at most {MAX_ALIASES} aliases")
    for text, what in ((name, "the name"), *((alias, "an alias") for alias in aliases)):
        _no_controls(text, what)
        if len(" ".join(text.split())) > MAX_NAME_CHARS:
            raise BadUserInput(f"{what} is longer than {MAX_NAME_CHARS} characters")
    name, aliases = normalize_figure(name, aliases)
    if not figure_key(name):
        raise BadUserInput("the name has no letters or digits")
    linked = None if user_id is None else (await _existing_user(ctx, user_id))["id"]
    db = ctx.services.graph
    figure, created = await figure_repo.add_figure(
        db,
        id=str(ULID()),
        name=name,
        key=figure_key(name),
        aliases=aliases,
        user_id=linked,
        now=_now(),
    )
    if not created:
        raise Conflict("this name is registered already; remove that entry first to change it")
    await audit.append(
        db,
        actor_id=admin_id,
        action="registry.public_figure.add",
        subject=figure["id"],
        details={"aliases": len(aliases), "linked": linked is not None},
    )
    return figure


async def remove_public_figure(ctx: Context, figure_id: str) -> dict:
    admin_id = await ctx.require_role("ADMIN")
    raw_id = decode_id(figure_id, "PublicFigure")
    figure = await figure_repo.remove_figure(ctx.services.graph, raw_id)
    if figure is None:
        raise NotFound("no public figure with this ID")
    await audit.append(
        ctx.services.graph,
        actor_id=admin_id,
        action="registry.public_figure.remove",
        subject=raw_id,
    )
    return figure


async def public_figures(ctx: Context, first: int | None, after: str | None) -> Page[dict]:
    """The registry, oldest first; admins only."""
    await ctx.require_role("ADMIN")
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    rows = await figure_repo.figures_page(ctx.services.graph, cursor, limit + 1)
    return make_page(rows, limit, key=lambda figure: (figure["createdAt"], figure["id"]))
