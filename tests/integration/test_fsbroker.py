"""example/fsbroker.py: a message being written is invisible to consumers, with the installed kombu.

kombu's own filesystem transport lets a consumer take a file that is still
empty, and the worker dies ("Unrecoverable error: JSONDecodeError"); which
names a consumer takes differs between kombu versions, so this runs the
installed kombu's real consumer while a message is half written.
"""

from __future__ import annotations

import os
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection

from example import fsbroker


@pytest.fixture
def channel(tmp_path: Path) -> Any:
    (tmp_path / "queue").mkdir()
    (tmp_path / "processed").mkdir()
    queue, processed = str(tmp_path / "queue"), str(tmp_path / "processed")
    options = {
        "data_folder_in": queue,
        "data_folder_out": queue,
        "processed_folder": processed,
        "store_processed": True,
    }
    with Connection("filesystem://", transport=fsbroker.Transport, transport_options=options) as conn:
        yield conn.default_channel


def test_a_message_being_written_is_not_consumed(channel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = "q-test"
    seen_while_writing: list[object] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        # The partial file exists and is complete, but not yet renamed: a consumer must not see it.
        assert Path(src).exists()
        try:
            seen_while_writing.append(channel._get(queue))
        except Empty:
            seen_while_writing.append(None)
        real_replace(src, dst)

    monkeypatch.setattr(fsbroker.os, "replace", replace)
    channel._put(queue, {"body": "hello"})

    assert seen_while_writing == [None]
    assert channel._get(queue) == {"body": "hello"}  # once renamed, it is delivered
    with pytest.raises(Empty):
        channel._get(queue)
