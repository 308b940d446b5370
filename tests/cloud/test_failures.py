"""Store failures → one InputError class per kind (pure), and the same classes from a real S3
server (moto's, on 127.0.0.1) for stat, open and hash. No Spark."""
import errno
import hashlib
import importlib.util

import pytest

from panda_spark import storage
from panda_spark.errors import (AccessDenied, FileNotFound, MissingBackend, RemoteTimeout, StorageFailure,
                                UnknownScheme)
from tests.cloud.conftest import BUCKET
from tests.conftest import shared_data


def _client_error(code: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"}}, "GetObject")


def test_store_exceptions_map_to_one_class_each():
    from botocore.exceptions import (ConnectTimeoutError, EndpointConnectionError, NoCredentialsError,
                                     ReadTimeoutError)

    cases = [
        (ImportError("Install s3fs to access S3"), MissingBackend),
        (ValueError("Protocol not known: foo"), UnknownScheme),
        (FileNotFoundError("bucket/key"), FileNotFound),
        (_client_error("NoSuchKey"), FileNotFound),
        (PermissionError("Access Denied"), AccessDenied),  # s3fs's 403
        (_client_error("403"), AccessDenied),
        (NoCredentialsError(), AccessDenied),
        (TimeoutError("read"), RemoteTimeout),
        (ReadTimeoutError(endpoint_url="http://s3"), RemoteTimeout),
        (ConnectTimeoutError(endpoint_url="http://s3"), RemoteTimeout),
        (EndpointConnectionError(endpoint_url="http://s3"), StorageFailure),
        (OSError(errno.EIO, "Internal error"), StorageFailure),  # s3fs's 5xx
    ]
    for exc, expected in cases:
        got = storage.failure(exc, "s3://b/k.mp4")
        assert type(got) is expected, (exc, got)
        assert got.message.startswith("s3://b/k.mp4: ")
    assert "pip install panda-spark[cloud]" in storage.failure(ImportError("Install s3fs")).message
    assert storage.failure(ValueError("bad number")) is None  # not a store's: a bug, it propagates
    assert storage.failure(KeyError("x")) is None
    with pytest.raises(AccessDenied), storage.failures("s3://b/k"):
        raise PermissionError("denied")
    with pytest.raises(KeyError), storage.failures("s3://b/k"):
        raise KeyError("x")


def test_stat_open_and_hash_through_s3_and_each_failure_its_class(s3):
    import fsspec

    clip = shared_data("panda70m_samples", "clips", "7nxhg1S6BV4.22.mp4")
    data = clip.read_bytes()
    fs = fsspec.filesystem("s3", **s3["s3"])
    fs.mkdir(BUCKET)
    fs.pipe(f"{BUCKET}/clips/a.mp4", data)
    storage.use_options(s3)

    uri = f"s3://{BUCKET}/clips/a.mp4"
    assert storage.stat_file(uri).size == len(data)
    assert storage.sha256_file(uri) == hashlib.sha256(data).hexdigest()
    with storage.open_binary(uri) as fh:
        assert fh.read(16) == data[:16]
    with pytest.raises(FileNotFound):
        storage.stat_file(f"s3://{BUCKET}/clips/missing.mp4")
    with pytest.raises(FileNotFound):
        storage.open_binary("s3://no-such-bucket/a.mp4")
    assert importlib.util.find_spec("ocifs") is None  # an fsspec scheme whose backend is not installed
    with pytest.raises(MissingBackend, match=r"ocifs.*panda-spark\[cloud\]"):
        storage.stat_file("oci://bucket/a.mp4")
    with pytest.raises(UnknownScheme):
        storage.open_binary("nosuchscheme://bucket/a.mp4")

    storage.use_options({"s3": {"endpoint_url": s3["s3"]["endpoint_url"], "skip_instance_cache": True}})
    with pytest.raises(AccessDenied, match="NoCredentialsError"):  # the conf without key/secret: none in env
        storage.stat_file(uri)


def test_storage_options_are_a_mapping_per_scheme_passed_on_as_written():
    from panda_spark.config import load_config
    from panda_spark.errors import ConfigError

    cfg = load_config(None, ['paths.storage_options={"s3": {"endpoint_url": "http://127.0.0.1:9000", "anon": false, '
                             '"client_kwargs": {"region_name": "eu-west-1"}}}'])
    assert cfg.paths.storage_options == {"s3": {"endpoint_url": "http://127.0.0.1:9000", "anon": False,
                                                "client_kwargs": {"region_name": "eu-west-1"}}}
    with pytest.raises(ConfigError, match=r"paths\.storage_options\.s3'.*mapping"):
        load_config(None, ['paths.storage_options={"s3": "http://127.0.0.1:9000"}'])
