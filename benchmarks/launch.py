"""Run a command and print its wall time (s) and the peak RSS (KiB) of its whole process tree.

Kept tiny on purpose: the command is forked from here, and a child's peak RSS includes what it
inherited at fork. A command may start helper processes, so the tree is walked every few
milliseconds and each process's own high-water mark (``VmHWM``) is kept; the figure is the sum
of those marks, an upper bound of what the tree held at once (the processes' peaks need not
coincide). A process that lives less than one poll is missed: helpers here live as long as
their parent does.
"""

import os
import sys
import time


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            found = [int(c) for c in handle.read().split()]
    except OSError:
        return found
    for child in list(found):
        found.extend(children(child))
    return found


def high_water_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # our stdout carries only the figures
    os.execvp(sys.argv[1], sys.argv[1:])
peaks = {pid: 0}
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    for process in [pid, *children(pid)]:
        peaks[process] = max(peaks.get(process, 0), high_water_kib(process))
    time.sleep(0.005)
elapsed = time.perf_counter() - started
if len(peaks) == 1:  # no helpers: the kernel's figure covers the command to its last page
    peaks[pid] = max(peaks[pid], usage.ru_maxrss)  # (with helpers it is their maximum, not ours)
code = os.waitstatus_to_exitcode(status)
print(f"{elapsed:.6f} {sum(peaks.values())}")
sys.exit(code)
