"""An S3-compatible server (moto's, in this process, on 127.0.0.1) for the s3:// tests.

`s3` yields the storage options that reach it (conf key `paths.storage_options`): fake
credentials, which the server accepts, and its endpoint. fsspec's per-scheme defaults are
restored afterwards, so no other test sees this server. moto keeps its buckets in
process-wide state that outlives a server, so each server starts from a reset store.
"""
from __future__ import annotations

import copy
import urllib.request

import pytest

BUCKET = "panda-raw"


@pytest.fixture
def s3(monkeypatch):
    import logging

    import fsspec.config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request

    # boto must find no credentials of its own: only the conf's reach the store
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    saved = copy.deepcopy(fsspec.config.conf)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10).close()
        yield {"s3": {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}}
    finally:
        server.stop()
        fsspec.config.conf.clear()
        fsspec.config.conf.update(saved)
