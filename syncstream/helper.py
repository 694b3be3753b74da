"""Helper processes: a child ``python -m module`` that takes framed msgpack requests on its
stdin, answers some of them on its stdout, and dies with its parent.

Both phases are a CPU-bound half (decoding, building tables) and a syscall-bound half (creating,
reading, removing thousands of small files). Threads cannot overlap the two: every syscall
gives up the GIL and then waits for the busy thread's switch interval to get it back. A
second process can, and a pipe carries the work between them in batches.

A frame is a little-endian ``u32`` length and a msgpack body. A helper started by a thread that
exits is killed with it (``PR_SET_PDEATHSIG`` is per thread): start helpers from a thread that
outlives them, such as the main thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from syncstream.errors import HelperError

__all__ = ["Helper", "helper_arguments", "serve"]

_LENGTH = struct.Struct("<I")
_STOPS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@functools.cache
def _codec() -> tuple[Callable[[object], bytes], Callable[[bytes | memoryview], Any]]:
    """msgpack, imported on first use: a command starts its helper before it imports msgspec."""
    import msgspec  # noqa: PLC0415

    return msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder().decode


def _encode(message: object) -> bytes:
    return _codec()[0](message)


def _decode(data: bytes | memoryview) -> Any:
    return _codec()[1](data)


_PIPE_BYTES = 1 << 20  # room for a few batches in flight, so neither side waits on the other


def _write_frame(stream: IO[bytes], message: object) -> None:
    body = _encode(message)
    stream.write(_LENGTH.pack(len(body)))
    stream.write(body)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> tuple[bool, Any]:
    """(True, message), or (False, None) at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return False, None
    (length,) = _LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        return False, None
    return True, _decode(body)


def _widen(fd: int) -> None:
    with contextlib.suppress(AttributeError, OSError):  # Linux only; the default 64 KiB also works
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


class Helper:
    """The parent's end: ``send`` a request, ``receive`` an answer, ``close`` when done.

    ``pass_fds`` hands descriptors to the helper, such as the writer lock's, so that the lock
    is held until every process that writes the cache is gone.
    """

    def __init__(self, module: str, *args: str, pass_fds: Sequence[int] = ()) -> None:
        self.module = module
        # The helper starts with the stop signals blocked (a mask is inherited through fork and
        # exec), so that one sent to the group while it starts up waits until ``serve`` ignores it.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", module, str(os.getpid()), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=tuple(pass_fds),
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin: IO[bytes] = self._process.stdin
        self._stdout: IO[bytes] = self._process.stdout
        self._answers = bytearray()  # read from the helper's stdout, not yet taken as frames
        _widen(self._stdin.fileno())

    def send(self, message: object) -> None:
        try:
            _write_frame(self._stdin, message)
        except (BrokenPipeError, ValueError):
            raise self._died() from None

    def receive(self) -> Any:
        """The next answer, waiting for it."""
        while (message := self._take()) is None:
            if not self._fill():
                raise self._died()
        return message[0]

    def ready(self) -> bool:
        """Whether an answer can be received without waiting."""
        while not self._framed():
            readable, _, _ = select.select([self._stdout], [], [], 0)
            if not readable or not self._fill():
                return False
        return True

    def _framed(self) -> int:
        """The end of the first whole frame read so far, or 0 when there is none yet."""
        if len(self._answers) < _LENGTH.size:
            return 0
        end: int = _LENGTH.size + _LENGTH.unpack_from(self._answers)[0]
        return end if len(self._answers) >= end else 0

    def _fill(self) -> bool:
        chunk = os.read(self._stdout.fileno(), _PIPE_BYTES)
        self._answers += chunk
        return bool(chunk)

    def _take(self) -> tuple[Any] | None:
        end = self._framed()
        if not end:
            return None
        with memoryview(self._answers) as view:
            message = _decode(view[_LENGTH.size : end])
        del self._answers[:end]
        return (message,)

    def _died(self) -> HelperError:
        code = self._process.wait()
        return HelperError(f"the helper process {self.module} stopped (exit code {code})")

    def close(self) -> int:
        """Close its stdin (it finishes what it was sent, then exits) and wait; its exit code."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stdin.close()
        code = self._process.wait()
        self._stdout.close()
        return code

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        for stream in (self._stdin, self._stdout):
            with contextlib.suppress(BrokenPipeError, ValueError):
                stream.close()


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the thread that started it exits, however it exits."""
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415 (the helper's side only)

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def helper_arguments(module: str, parent: str, names: str, required: int) -> list[str]:
    """The arguments of a helper after its parent's PID, or exit: ``--help`` says what the
    module is (exit 0); a run by hand without a parent is an error line (exit 2)."""
    usage = f"usage: python -m {module} PARENT_PID {names}"
    argv = sys.argv[1:]
    if {"-h", "--help"} & set(argv):
        print(f"{usage}\n\nA helper process of python -m {parent}, which starts it and sends it work "
              "over its stdin (framed msgpack); not a command to run by hand.")  # fmt: skip
        raise SystemExit(0)
    if len(argv) < 1 + required or not argv[0].isdigit():
        print(f"error: python -m {module} is a helper process of python -m {parent}, which starts "
              f"it; not a command to run by hand ({usage})", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return argv[1:]


def serve(handle: Callable[[Any], object]) -> int:
    """The helper's main loop: ``handle`` each request in order; a result other than None is
    sent back as the answer. Exits 0 at the end of stdin (the parent closed it or died)."""
    _die_with_parent(int(sys.argv[1]))
    # A stop is the parent's to handle: a Ctrl-C, a terminal's hangup and a service manager's
    # SIGTERM reach the whole process group, and a helper that died of them would fail the
    # parent's clean stop. The parent finishes its work with the helper and then closes its
    # stdin; if the parent dies instead, so does the helper (``_die_with_parent``).
    for signum in _STOPS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # what arrived meanwhile is dropped
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _widen(stdout.fileno())
    while True:
        ok, request = _read_frame(stdin)
        if not ok:
            # Every request is answered and flushed: nothing is left to finish, and skipping
            # the interpreter's teardown (pyarrow's is 20 ms) lets the parent's wait end now.
            stdout.flush()
            os._exit(0)
        answer = handle(request)
        if answer is not None:
            _write_frame(stdout, answer)
