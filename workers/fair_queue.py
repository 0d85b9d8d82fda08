"""Fair rendering: workers serve users in turn, so one user's backlog cannot starve another's.

createClip does not put its render on the Celery queue. It appends the clip to its author's
own list in Redis, adds the author to the ring of users with clips waiting (once), and then
sends one generic "render the next one" task (workers.queue RENDER_NEXT_TASK). Whichever
worker takes such a task pops the next user off the ring (one Lua script, atomic across
workers), takes that user's oldest waiting clip, and puts the user back at the end of the ring
if more of theirs wait. So with one user flooding and another asking for one clip, the second
user's clip waits for the renders in progress and at most one more of the first user's.

Each task takes one clip and remembers which (`taken:<task id>`), so a redelivery of the same
task (its worker died; a retry after a transient failure, which Celery sends with the same id)
renders the same clip again, with the claim and lease rules of workers.render_job. There are
as many tasks as entries; a task whose entry turns out finished or removed takes the next one,
so an entry without a task (its clip rendered meanwhile by a re-queued task of the reaper)
never leaves another entry waiting.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FairQueue",
    "enqueue",
    "mean_render_s",
    "purge",
    "record_render_s",
    "withdraw",
]

_PREFIX = "reelgraph:render:"
_RING = f"{_PREFIX}ring"  # user ids, in turn
_MEMBERS = f"{_PREFIX}ring-members"  # the users on the ring, so each is there once
_USER_PREFIX = f"{_PREFIX}waiting:"  # + user id: that user's waiting clip ids, oldest first
_TAKEN_PREFIX = f"{_PREFIX}taken:"  # + task id: the clip that task took
_MEAN = f"{_PREFIX}mean-ms"  # recent renders' mean wall time, for retryAfterSeconds
# a task's record of its clip outlives any redelivery or retry of the task
_TAKEN_TTL_S = 7 * 86_400
_DEFAULT_RENDER_S = 30.0

# KEYS[1]: the user's list, KEYS[2]: ring, KEYS[3]: ring members. ARGV[1]: clip, ARGV[2]: user
_ENQUEUE = """
redis.call('RPUSH', KEYS[1], ARGV[1])
if redis.call('SADD', KEYS[3], ARGV[2]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS[1]: ring, KEYS[2]: ring members, KEYS[3]: this task's taken key.
# ARGV[1]: the users' list prefix, ARGV[2]: the taken key's ttl (s).
# The clip this task took before, else the next user's oldest waiting clip; nil when none waits.
_TAKE_NEXT = """
local before = redis.call('GET', KEYS[3])
if before then return before end
local turns = redis.call('LLEN', KEYS[1])
for _ = 1, turns do
  local user = redis.call('LPOP', KEYS[1])
  if not user then return nil end
  local list = ARGV[1] .. user
  local clip = redis.call('LPOP', list)
  if redis.call('LLEN', list) > 0 then
    redis.call('RPUSH', KEYS[1], user)
  else
    redis.call('SREM', KEYS[2], user)
  end
  if clip then
    redis.call('SET', KEYS[3], clip, 'EX', tonumber(ARGV[2]))
    return clip
  end
end
return nil
"""

# KEYS[1]: the mean. ARGV[1]: one render's wall time in ms. An exponential moving average.
_RECORD = """
local mean = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', mean * 0.8 + tonumber(ARGV[1]) * 0.2))
return 1
"""


def _user_key(user_id: str) -> str:
    return f"{_USER_PREFIX}{user_id}"


async def enqueue(redis: Any, user_id: str, clip_id: str) -> None:
    """Append the clip to its author's waiting list, and the author to the ring (API side)."""
    await redis.eval(_ENQUEUE, 3, _user_key(user_id), _RING, _MEMBERS, clip_id, user_id)


async def withdraw(redis: Any, user_id: str, clip_id: str) -> None:
    """Take a clip that will never render (discarded, removed) off its author's list. Its task
    then takes the next user's clip instead: tasks never fall short of entries."""
    await redis.lrem(_user_key(user_id), 0, clip_id)


async def mean_render_s(redis: Any) -> float:
    """How long a render has taken lately (the workers' moving average), in seconds."""
    mean = await redis.get(_MEAN)
    return int(mean) / 1000 if mean is not None else _DEFAULT_RENDER_S


def record_render_s(redis: Any, seconds: float) -> None:
    """One finished render's wall time, into the moving average (a worker, blocking)."""
    redis.eval(_RECORD, 1, _MEAN, max(1, int(seconds * 1000)))


def purge(redis: Any) -> None:
    """Drop every waiting entry and the ring (with Celery's purge of the render tasks: see
    workers.celery_app.RenderControl). Blocking client."""
    users = [_text(user) for user in redis.smembers(_MEMBERS)]
    users += [_text(user) for user in redis.lrange(_RING, 0, -1)]
    redis.delete(_RING, _MEMBERS, *{_user_key(user) for user in users})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class FairQueue:
    """A worker's side (a blocking client): take the next clip in turn for a task."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._take = redis.register_script(_TAKE_NEXT)

    def take(self, task_id: str) -> str | None:
        """The clip this task renders: the one it took before (a redelivery or retry), else
        the next user's oldest waiting clip; None when nothing waits."""
        keys = [_RING, _MEMBERS, f"{_TAKEN_PREFIX}{task_id}"]
        clip = self._take(keys=keys, args=[_USER_PREFIX, _TAKEN_TTL_S])
        return None if clip is None else _text(clip)

    def taken(self, task_id: str) -> str | None:
        """The clip the task took, if it holds one (a hard time limit's parent asks)."""
        clip = self._redis.get(f"{_TAKEN_PREFIX}{task_id}")
        return None if clip is None else _text(clip)

    def done(self, task_id: str) -> None:
        """The task is finished with its clip (rendered, failed, or found done already)."""
        self._redis.delete(f"{_TAKEN_PREFIX}{task_id}")
