"""The `redis` queue backend: several dispatcher processes sharing one Redis act as one.

Imported only when a config says `"queue": {"backend": "redis", "url": ...}` (see
`dispatch_core._backend`): the local backend never loads a Redis client. It needs the
`redis` package (redis-py, whose asyncio client it uses): `pip install 'comfyui-dispatch[redis]'`.
"""

from ._coordination import RedisCoordination

Coordination = RedisCoordination
"""The name `dispatch_core._backend.coordination_for` looks up in a backend's package."""

__all__ = ["Coordination", "RedisCoordination"]
