"""Run a command and print its wall time (s) and peak RSS (KiB). Kept tiny on purpose: the
command is forked from here, and a child's peak RSS includes what it inherited at fork."""

import os
import sys
import time

started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # our stdout carries only the figures
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
print(f"{elapsed:.6f} {usage.ru_maxrss}")
sys.exit(code)
