"""Commands as a person types them: the installed console script in a pseudo-terminal (pexpect).

Piped output (`subprocess.run(capture_output=True)`) takes other paths through rich — no progress bars, no colours,
no terminal width — so a crash that only a terminal shows passes every piped test. Here stdout and stderr are one
terminal, as on a screen.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pexpect

EVENTMART = str(Path(sys.executable).parent / "eventmart")
# CSI sequences (colours, cursor moves, erase line), OSC sequences (hyperlinks, titles) and carriage returns
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[=>]|\r")
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;[0-9;]+)m")  # a foreground colour was set


@dataclass
class Typed:
    rc: int
    raw: str  # what the terminal received, escape sequences and all
    cols: int = 120

    @property
    def text(self) -> str:
        """Everything that was written, escape sequences removed (erased progress bars included)."""
        return _ANSI.sub("", self.raw)

    @property
    def lines(self) -> list[str]:
        """What a person sees on the screen at the end: the output played through a terminal emulator (pyte), so
        that a transient progress bar that erased itself is gone and a redrawn line shows once."""
        import pyte

        # tall, so nothing scrolls away; wide, so a long line the program wrote as one reads as one (the program
        # itself drew for self.cols columns)
        screen = pyte.Screen(2000, max(self.raw.count("\n") + 5, 40))
        stream = pyte.Stream(screen)
        stream.feed(self.raw.replace("\r\n", "\n").replace("\n", "\r\n"))
        return [ln.rstrip() for ln in screen.display if ln.strip()]


def terminal_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TERM")}
    env.update({"TERM": "xterm-256color", "PATH": f"{Path(EVENTMART).parent}:{env.get('PATH', '')}"}, **extra)
    return env


def spawn(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 180,
          cols: int = 120) -> pexpect.spawn:
    """`eventmart ARGS` started in a terminal of ``cols`` columns; the caller drives it (expect, sendintr)."""
    return pexpect.spawn(EVENTMART, list(args), cwd=str(cwd) if cwd else None, env=env or terminal_env(),
                         dimensions=(40, cols), encoding="utf-8", codec_errors="replace", timeout=timeout,
                         use_poll=True)  # select() fails once the test process holds fd 1024+


def typed(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 180,
          cols: int = 120) -> Typed:
    """Run `eventmart ARGS` in a terminal until it ends; never a traceback."""
    child = spawn(*args, cwd=cwd, env=env, timeout=timeout, cols=cols)
    child.expect(pexpect.EOF)
    child.close()
    rc = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
    out = Typed(rc, child.before or "", cols)
    assert "Traceback" not in out.text and "lost sys.stderr" not in out.text, out.text
    return out
