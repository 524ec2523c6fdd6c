"""kombu's filesystem transport, with messages written atomically.

kombu's ``filesystem://`` transport writes a message file in place, and a
consumer polling the folder can take it while it is still empty; the worker
then dies with "Unrecoverable error: JSONDecodeError".  This subclass writes
each message under a name the consumer ignores and renames it into place,
which is atomic.  Use it with ``broker_url="filesystem://"`` and
``broker_transport="example.fsbroker:Transport"``.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        unique = uuid.uuid4()
        final = os.path.join(self.data_folder_out, f"{round(monotonic() * 1000)}_{unique}.{queue}.msg")
        # The name being written must not contain ".<queue>.msg" at all: kombu up to 5.5 takes
        # any file whose name contains it (5.6 on, only names that end in it).
        partial = os.path.join(self.data_folder_out, f".{unique}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
