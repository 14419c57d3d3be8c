"""A KRaft cluster id for `kafka-storage format -t`: 16 random bytes, URL-safe base64 without padding.

Kafka's own `Uuid.randomUuid()` draws again when the text starts with "-", since the storage tool's argument
parser reads such an id as an option ("argument --cluster-id/-t: expected one argument"); one id in 64 did,
and the broker's first start failed with it. This does the same.
"""
from __future__ import annotations

import base64
import os
from typing import Callable


def cluster_id(draw: Callable[[int], bytes] = os.urandom) -> str:
    while True:
        text = base64.urlsafe_b64encode(draw(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


if __name__ == "__main__":
    print(cluster_id())
