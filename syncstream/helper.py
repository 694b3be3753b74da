"""Helper processes: a child ``python -m module`` that takes typed requests on its stdin,
answers them in order on its stdout, and dies with its parent.

Both phases are a CPU-bound half (decoding, building tables) and a syscall-bound half (creating,
reading, removing thousands of small files). Threads cannot overlap the two: every syscall
gives up the GIL and then waits for the busy thread's switch interval to get it back. A
second process can, and a pipe carries the work between them in batches.

A frame is a little-endian ``u32`` length and a msgpack body: one tagged ``msgspec`` struct.
A helper declares the ``Request`` subclasses it takes and the ``Answer`` subclasses it gives,
one union each; the lifecycle adds its own answers:

- ``Ready``, the helper's first frame, once it is set up (the start handshake);
- ``Done``, the answer of a request that has nothing else to report;
- ``Failed``, the answer of a request that raised: the parent raises it as ``HelperError``.

A request that is not ``answered`` (a batch of work, sent without waiting) has no answer to
carry an error: one ends the helper, and the parent finds it gone (``HelperError``) at its next
send or receive. A helper started by a thread that exits is killed with it
(``PR_SET_PDEATHSIG`` is per thread): start helpers from a thread that outlives them, such as
the main thread.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, Any, ClassVar, NoReturn, Protocol, Self, TypeVar

import msgspec

from syncstream.errors import HelperError

__all__ = [
    "Answer",
    "Done",
    "Failed",
    "Helper",
    "Ready",
    "Request",
    "Stopping",
    "helper_arguments",
    "serve",
]

_LENGTH = struct.Struct("<I")
_STOPS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
_PIPE_BYTES = 1 << 20  # room for a few batches in flight, so neither side waits on the other


class Request(msgspec.Struct, tag=True, array_like=True, gc=False):
    """A message to a helper, tagged by its class name. The helper answers it, in order, unless
    ``answered`` is False."""

    answered: ClassVar[bool] = True


class Answer(msgspec.Struct, tag=True, array_like=True, gc=False):
    """A message from a helper, tagged by its class name."""


class Ready(Answer):
    """The helper's first frame: it is set up and reads requests."""


class Done(Answer):
    """The answer of a request that has nothing else to report."""


class Failed(Answer):
    """The answer of a request that raised: ``Type: message``."""

    error: str


_LIFECYCLE = Ready | Done | Failed
A = TypeVar("A", bound=Answer)


def _write_frame(stream: IO[bytes], body: bytes) -> None:
    stream.write(_LENGTH.pack(len(body)))
    stream.write(body)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's body, or None at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    body = stream.read(length)
    return body if len(body) == length else None


def _widen(fd: int) -> None:
    with contextlib.suppress(AttributeError, OSError):  # Linux only; the default 64 KiB also works
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


class Stoppable(Protocol):
    """What a phase's helper (or the same work done inline) offers to be stopped: the part every
    ``FileWrites`` and ``PartWrites`` shares, which ``Stopping`` implements."""

    def close(self) -> object:
        """Stop, once what was sent is done."""
        ...

    def kill(self) -> None:
        """Stop at once (after a failure: nothing unconfirmed is committed)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """``close``; ``kill`` after an error."""
        ...


class Stopping(abc.ABC):
    """A context manager that stops a phase's helper (or the same work done inline): ``close``
    when the block ends (what was sent is finished), ``kill`` when it ends with an error (what
    was not confirmed is dropped)."""

    @abc.abstractmethod
    def close(self) -> object: ...

    @abc.abstractmethod
    def kill(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.kill()


class Helper(Stopping):
    """The parent's end of a helper: ``send`` requests, ``receive`` their answers in order,
    ``close`` when done (or ``kill``). ``answers`` is the union of the helper's own answers;
    ``name`` says what it is in an error.

    Once the helper has died, every call raises its ``HelperError`` at once. ``pass_fds`` hands
    descriptors to the helper, such as the writer lock's, so that the lock is held until every
    process that writes the cache is gone.
    """

    def __init__(
        self, module: str, *args: str, answers: Any, name: str, pass_fds: Sequence[int] = ()
    ) -> None:
        self.module = module
        self.name = name
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
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(answers | _LIFECYCLE).decode
        self._unread = bytearray()  # read from the helper's stdout, not yet a whole frame
        self._inbox: deque[Answer] = deque()  # answers read, not yet received
        self._expected: deque[str] = deque()  # the answered requests sent, not yet answered
        self._started = False  # whether its Ready was read
        self._dead: HelperError | None = None
        _widen(self._stdin.fileno())

    @property
    def alive(self) -> bool:
        """False once the helper was found dead: every call raises then."""
        return self._dead is None

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited and been waited for (negative: the signal)."""
        return self._process.returncode

    @property
    def pending(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._expected)

    def send(self, request: Request) -> None:
        if self._dead is not None:
            raise self._dead
        try:
            _write_frame(self._stdin, self._encode(request))
        except (BrokenPipeError, ValueError):
            raise self._died() from None
        if request.answered:
            self._expected.append(type(request).__name__)

    def receive(self, kind: type[A]) -> A:
        """The answer of the oldest request not yet answered, waiting for it; ``HelperError``
        if it failed, or if the helper died."""
        if self._dead is not None:
            raise self._dead
        assert self._expected, "no request is waiting for an answer"
        while not self._inbox:
            self._fill()
        answer = self._inbox.popleft()
        request = self._expected.popleft()
        if isinstance(answer, Failed):
            raise HelperError(f"{self.name} failed ({request}): {answer.error}")
        if not isinstance(answer, kind):
            raise HelperError(f"{self.name} answered {type(answer).__name__} to {request}")
        return answer

    def answered(self) -> bool:
        """Whether an answer can be received without waiting."""
        while not self._inbox and self._dead is None:
            readable, _, _ = select.select([self._stdout], [], [], 0)
            if not readable:
                return False
            self._fill()
        return bool(self._inbox)

    def _fill(self) -> None:
        """Read what the helper has written (waiting for something) and decode its whole
        frames; ``HelperError`` at the end of its stdout."""
        chunk = os.read(self._stdout.fileno(), _PIPE_BYTES)
        if not chunk:
            raise self._died()
        data = self._unread
        data += chunk
        start = 0
        while len(data) - start >= _LENGTH.size:
            end = start + _LENGTH.size + _LENGTH.unpack_from(data, start)[0]
            if end > len(data):
                break
            with memoryview(data) as view:
                answer: Answer = self._decode(view[start + _LENGTH.size : end])
            start = end
            if self._started:
                self._inbox.append(answer)
            elif isinstance(answer, Ready):
                self._started = True
            else:
                raise HelperError(f"{self.name} began with {type(answer).__name__}, not Ready")
        del data[:start]

    def _died(self) -> HelperError:
        code = self._process.wait()
        self._dead = HelperError(f"the helper process {self.module} stopped (exit code {code})")
        return self._dead

    def close(self, timeout: float = 60.0) -> int:
        """Close its stdin (it finishes what it was sent, then exits) and wait, at most
        ``timeout`` seconds before it is killed; its exit code."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stdin.close()
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._stdout.close()
        return code

    def kill(self) -> None:
        """Stop it at once, dropping what it has not done; a no-op once it is gone."""
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


def serve(handle: Callable[[Any], Answer | None], requests: Any) -> NoReturn:
    """The helper's main loop: ``Ready``, then ``handle`` each request (of the union
    ``requests``) in order and send an answered one's answer (``Done`` for None, ``Failed`` if
    it raised). Exits 0 at the end of stdin (the parent closed it or died)."""
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
    decode = msgspec.msgpack.Decoder(requests).decode
    encode = msgspec.msgpack.Encoder().encode
    _write_frame(stdout, encode(Ready()))
    while (body := _read_frame(stdin)) is not None:
        request: Request = decode(body)
        if not request.answered:
            handle(request)  # an error ends this process: no answer would carry it
            continue
        try:
            answer = handle(request) or Done()
        except Exception as error:  # answered: the parent raises it
            answer = Failed(f"{type(error).__name__}: {error}")
        _write_frame(stdout, encode(answer))
    # Every request is answered and flushed: nothing is left to finish, and skipping the
    # interpreter's teardown (pyarrow's is 20 ms) lets the parent's wait end now.
    stdout.flush()
    os._exit(0)
