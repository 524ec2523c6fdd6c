"""EXAMPLE_API_CLOCK_OFFSET: the API's token clock runs this many seconds ahead (+) or behind (-).

The tests use it to show that a worker whose clock differs from the API server's
still refreshes on time.  SimpleJWT (``rest_framework_simplejwt.utils``) and
PyJWT (``jwt.api_jwt``) both read the time as ``datetime.now(tz=...)``, so each
module gets a ``datetime`` whose ``now`` is shifted; issuing and verifying stay
consistent with each other, as on a server whose own clock is off.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo


def apply(offset: float) -> None:
    import jwt.api_jwt
    import rest_framework_simplejwt.utils

    shift = timedelta(seconds=offset)

    class _AnyDatetime(type):
        def __instancecheck__(cls, obj: object) -> bool:  # isinstance(x, datetime) keeps its meaning
            return isinstance(obj, datetime)

    class ShiftedDatetime(datetime, metaclass=_AnyDatetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + shift

    jwt.api_jwt.datetime = ShiftedDatetime  # type: ignore[misc]
    rest_framework_simplejwt.utils.datetime = ShiftedDatetime  # type: ignore[misc]
