"""S3 sources against a real S3 API server on loopback (moto's server process over HTTP; boto3 is never patched):
objects listed under a prefix, each loaded once by key + ETag, a changed object read again with its known keys as
duplicates, the same rejects and dedup as local files — CSV, JSONL and Parquet — and one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import events_config, write_project
from eventmart import Project
from helpers import random_events

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def csv_bytes(events: list[dict], extra: list[str] = ()) -> bytes:
    buf = io.StringIO()
    pd.DataFrame(events).to_csv(buf, index=False)
    return (buf.getvalue() + "".join(x + "\n" for x in extra)).encode()


def project(tmp: Path, bucket: str, endpoint: str, engine: dict | None = None, fmt: str = "csv") -> Path:
    cfg = events_config(engine)
    src = cfg["sources"]["events"]
    src.pop("path")
    src.update(format=fmt, s3={"bucket": bucket, "prefix": "logs/", "glob": f"*.{fmt}", "endpoint_url": endpoint})
    return write_project(tmp, cfg)


def test_objects_load_once_by_etag_and_changed_ones_again(tmp_path, s3, engine):
    client, bucket, endpoint = s3
    events = random_events(600, seed=3, hours=6)
    client.put_object(Bucket=bucket, Key="logs/2024/a.csv", Body=csv_bytes(events[:400], ["bad,line"]))
    client.put_object(Bucket=bucket, Key="logs/2024/b.csv", Body=csv_bytes(events[350:500]))
    client.put_object(Bucket=bucket, Key="logs/2024/skip.txt", Body=b"not matched by the glob")
    client.put_object(Bucket=bucket, Key="other/c.csv", Body=csv_bytes(events[500:]))  # outside the prefix
    d = project(tmp_path, bucket, endpoint, engine)
    with Project.load(d) as p:
        r = p.ingest("events")
        assert (r.loaded, r.duplicates, r.rejected) == (500, 50, 1), r.summary()
        [(file, line, _, raw, _)] = p.rejects("events").rows
        assert (file, line, raw) == (f"s3://{bucket}/logs/2024/a.csv", 402, "bad,line")
        got = p.query("SELECT count(*), count(DISTINCT id), sum(user_id) FROM events").rows[0]
        assert tuple(int(x) for x in got) == (500, 500, sum(e["user_id"] for e in events[:500]))
        # again: nothing is downloaded or read
        r = p.ingest("events")
        assert (r.loaded, r.duplicates, r.rejected, len(r.skipped)) == (0, 0, 0, 2), r.summary()
        assert not list((d / ".eventmart" / "s3").rglob("*.csv"))  # cached copies removed once loaded
        # b.csv is replaced by a longer version: read again, its old keys are duplicates
        client.put_object(Bucket=bucket, Key="logs/2024/b.csv", Body=csv_bytes(events[350:600]))
        r = p.ingest("events")
        assert (r.loaded, r.duplicates, r.rejected) == (100, 150, 0), r.summary()
        assert p.query("SELECT count(*) FROM events").rows[0][0] == 600
        assert len(p.rejects("events").rows) == 1


def test_jsonl_and_parquet_objects(tmp_path, s3):
    client, bucket, endpoint = s3
    events = random_events(300, seed=8, hours=3)
    body = "\n".join(json.dumps(e) for e in events[:200]) + "\n{not json\n"
    client.put_object(Bucket=bucket, Key="logs/a.jsonl", Body=body.encode())
    d = project(tmp_path / "j", bucket, endpoint, fmt="jsonl")
    with Project.load(d) as p:
        r = p.ingest("events")
        assert (r.loaded, r.rejected) == (200, 1)
        assert p.rejects("events").rows[0][0] == f"s3://{bucket}/logs/a.jsonl"
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(events), buf)
    client.put_object(Bucket=bucket, Key="logs/b.parquet", Body=buf.getvalue())
    d = project(tmp_path / "p", bucket, endpoint, fmt="parquet")
    with Project.load(d) as p:
        assert p.ingest("events").loaded == 300


def em(d: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args, "-p", str(d)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})})
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_s3_mistakes_are_one_line_with_exit_2(tmp_path, s3):
    client, bucket, endpoint = s3
    client.put_object(Bucket=bucket, Key="logs/a.csv", Body=csv_bytes(random_events(5)))
    d = project(tmp_path, bucket, endpoint)
    r = em(d, "ingest", "events")
    assert r.returncode == 0 and "5 loaded" in r.stdout, r.stdout + r.stderr
    for env, needle in [({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": "/nope",
                          "AWS_CONFIG_FILE": "/nope"}, "no AWS credentials"),
                        ({}, "NoSuchBucket")]:
        if needle == "NoSuchBucket":
            cfg = (d / "eventmart.yml").read_text().replace(bucket, "no-such-bucket")
            (d / "eventmart.yml").write_text(cfg)
        r = em(d, "ingest", "events", "--force", env=env)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "testing-secret" not in r.stderr
    with pytest.raises(Exception, match="either path"):
        cfg = events_config()
        cfg["sources"]["events"]["s3"] = {"bucket": bucket}
        write_project(tmp_path / "both", cfg)
        Project.load(tmp_path / "both")
