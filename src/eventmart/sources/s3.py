"""S3 sources: the objects under a bucket's prefix, each read once.

An object ledger (``_eventmart_objects``: source, object URL, ETag, size) says which objects were loaded
completely: an unchanged object is skipped without being downloaded, a changed one (a new ETag) is read again —
its keys already loaded count as duplicates, so the raw table stays exact. An object to read is streamed to a
file in the project's ``.eventmart/s3/`` cache (bounded memory whatever its size), read by the same chunked
readers, rejects and dedup as a local file (named by its ``s3://bucket/key`` URL), and removed once loaded; a
load stopped half way resumes from the cached file. Works with any S3-compatible endpoint. Credentials come
from the standard AWS chain (environment, profile, instance role), never from the project file.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, UserError

if TYPE_CHECKING:
    from ..config import S3Spec, Source
    from ..warehouse import Warehouse
    from .log import IngestResult

OBJECTS = "_eventmart_objects"


@dataclass
class S3Object:
    key: str
    etag: str
    size: int
    modified: datetime

    def url(self, bucket: str) -> str:
        return f"s3://{bucket}/{self.key}"


def client(spec: S3Spec) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise UserError("an S3 source needs the s3 extra: pip install 'eventmart[s3]' (boto3)") from None
    return boto3.session.Session().client(
        "s3", endpoint_url=spec.endpoint_url, region_name=spec.region,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=120))


def _explain(e: Exception, spec: S3Spec, name: str) -> UserError:
    """The S3 error as one line: what, where, what to do — never a credential."""
    from botocore import exceptions as bx

    where = f"sources.{name}.s3: s3://{spec.bucket}/{spec.prefix}"
    if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return UserError(f"{where}: no AWS credentials found; export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                         "(or AWS_PROFILE)")
    if isinstance(e, bx.EndpointConnectionError):
        return UserError(f"{where}: cannot reach {spec.endpoint_url or 'the S3 endpoint'}; check endpoint_url and "
                         "the network")
    if isinstance(e, bx.ClientError):
        err = e.response.get("Error", {})
        code, msg = err.get("Code", "error"), err.get("Message", "")
        hint = {"NoSuchBucket": "check the bucket name", "AccessDenied": "check the credentials' permissions",
                "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID", "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY"}
        return UserError(f"{where}: {code}{': ' + msg if msg else ''}; {hint.get(code, 'check the source')}")
    return UserError(f"{where}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


def list_objects(spec: S3Spec, name: str, s3: Any | None = None) -> list[S3Object]:
    """Objects under the prefix whose rest of the key matches the glob, in key order."""
    from botocore import exceptions as bx

    s3 = s3 or client(spec)
    out = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=spec.prefix):
            for o in page.get("Contents", []):
                rest = o["Key"][len(spec.prefix):]
                if o["Key"].endswith("/") or not fnmatch.fnmatchcase(rest, spec.glob):
                    continue
                out.append(S3Object(o["Key"], o["ETag"].strip('"'), int(o["Size"]), o["LastModified"]))
    except (bx.BotoCoreError, bx.ClientError) as e:
        raise _explain(e, spec, name) from None
    return sorted(out, key=lambda o: o.key)


def ensure_ledger(wh: Warehouse) -> None:
    if wh.table_columns(OBJECTS) is None:
        wh.create_table(OBJECTS, [(c, wh.type_name(t)) for c, t in (
            ("source", "string"), ("url", "string"), ("etag", "string"), ("size", "int"), ("ingest", "int"),
            ("loaded_at", "timestamp"))])


def _loaded(wh: Warehouse, name: str) -> dict[str, str]:
    if wh.table_columns(OBJECTS) is None:
        return {}
    return dict(wh.fetch(f"SELECT url, etag FROM {wh.q(OBJECTS)} WHERE source = {{{{ s }}}}", {"s": name}).rows)


def _cached(path: Path, obj: S3Object) -> bool:
    """The object was downloaded already (a load stopped half way): same size and modification time."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_size == obj.size and int(st.st_mtime) == int(obj.modified.timestamp())


def download(s3: Any, spec: S3Spec, obj: S3Object, target: Path) -> None:
    """Stream the object to ``target`` (chunk by chunk: memory stays bounded), stamped with its modification time
    so that the file ledger sees a changed object as a changed file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with open(tmp, "wb") as f:
        s3.download_fileobj(spec.bucket, obj.key, f)
    ts = obj.modified.timestamp()
    os.utime(tmp, (ts, ts))
    tmp.replace(target)


def ingest_objects(wh: Warehouse, name: str, src: Source, project_dir: Path,
                   progress: Callable[[str, int, int], None] | None = None, force: bool = False,
                   dimensions: Sequence[str] = ()) -> IngestResult:
    """Load the new and changed objects of an S3 source (all of them with ``force``)."""
    from botocore import exceptions as bx

    from ..rawtables import FILES
    from ..timeutil import utcnow
    from .ingest import ingest

    spec = src.s3
    s3 = client(spec)
    objects = list_objects(spec, name, s3)
    if not objects:
        raise InputError(f"sources.{name}.s3: no object under s3://{spec.bucket}/{spec.prefix} matches "
                         f"'{spec.glob}'; check bucket, prefix and glob")
    done = {} if force else _loaded(wh, name)
    cache = project_dir / ".eventmart" / "s3" / spec.bucket
    todo: list[tuple[S3Object, Path]] = []
    unchanged: list[str] = []
    for obj in objects:
        url = obj.url(spec.bucket)
        if done.get(url) == obj.etag:
            unchanged.append(url)
            continue
        path = cache / obj.key
        if not _cached(path, obj):
            try:
                download(s3, spec, obj, path)
            except (bx.BotoCoreError, bx.ClientError) as e:
                raise _explain(e, spec, name) from None
        todo.append((obj, path))
    labels = {str(p.resolve()): o.url(spec.bucket) for o, p in todo}
    res = ingest(wh, name, src, list(labels), progress, force, dimensions, labels=labels)
    res.skipped = unchanged + res.skipped
    # objects whose file finished loading go into the object ledger; their cached copies are not needed any more
    complete = {r[0] for r in wh.fetch(f"SELECT path FROM {wh.q(FILES)} WHERE source = {{{{ s }}}} "
                                       "AND complete", {"s": name}).rows}
    now = utcnow()
    with wh.transaction():
        ensure_ledger(wh)
        for obj, path in todo:
            local = str(path.resolve())
            if local not in complete:
                continue
            url = obj.url(spec.bucket)
            wh.delete_rows(OBJECTS, "source = {{ s }} AND url = {{ u }}", {"s": name, "u": url})
            wh.execute(f"INSERT INTO {wh.q(OBJECTS)} (source, url, etag, size, ingest, loaded_at) VALUES "
                       "({{ s }}, {{ u }}, {{ e }}, {{ n }}, {{ i }}, {{ t }})",
                       {"s": name, "u": url, "e": obj.etag, "n": obj.size, "i": res.id, "t": now})
    for _, path in todo:
        if str(path.resolve()) in complete:
            path.unlink(missing_ok=True)
    return res
