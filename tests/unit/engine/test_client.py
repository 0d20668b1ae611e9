"""What the client says when the engine does not come up."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch

from rewriter.engine.client import EngineUnavailable, wait_for_health
from rewriter.measure.serve_thread import free_port


def test_health_timeout_names_the_url_and_never_the_password() -> None:
    port = free_port()
    es = OpenSearch([f"https://admin:s3cret-pw@127.0.0.1:{port}/search"])
    with pytest.raises(EngineUnavailable) as info:
        wait_for_health(es, "yellow", timeout=0.5)
    message = str(info.value)
    assert message.startswith(f"OpenSearch at https://127.0.0.1:{port}/search did not reach")
    assert "s3cret-pw" not in message
    assert "affinity engine start" in message
