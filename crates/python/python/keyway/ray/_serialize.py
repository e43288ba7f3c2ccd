"""The hook in front of Ray's serializer, in the proxy's actor process: a kept answer is serialized once and that
serialization handed to every caller.

Ray pickles any return of an actor that is not an exact builtin type, and in the actor, between Ray's own work on
each call, that pickling costs more than the proxy's whole lookup (docs/benchmarks.md, "keyway.ray"). A Ray
internal: where this Ray has no such hook (a version other than the one Keyway is tested with), every answer is
pickled as before; the test suite checks that the hook is in place on the Ray Keyway pins.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import ray

from keyway.ray._secret import RaySecret

logger = logging.getLogger("keyway.ray")

#: Ray's own serializer of this process, once `serve_kept_serializations` put its hook in front of it.
ray_serialize: Optional[Callable[[Any], Any]] = None


def serve_kept_serializations() -> Optional[Callable[[Any], Any]]:
    """Ray's serializer answers a ``RaySecret`` that carries its serialization (``_serialized``, made by the proxy
    when it kept the answer) with that, instead of pickling it again for every caller. Returns Ray's own
    serializer, to make the serializations with; None where this Ray has no such hook."""
    global ray_serialize
    if ray_serialize is None:
        try:
            context = ray._private.worker.global_worker.get_serialization_context()
            original = context.serialize
        except AttributeError:
            logger.debug("this Ray has no serialization hook: answers are pickled per call")
            return None

        def serialize(value: Any) -> Any:
            if type(value) is RaySecret and value._serialized is not None:
                return value._serialized
            return original(value)

        context.serialize = serialize
        ray_serialize = original
    return ray_serialize
