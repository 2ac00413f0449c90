"""The sandboxed interpreter's first code: limits and guards, then the program (stdlib only).

`eval/sandbox.py` runs `python -I -S sandbox_boot.py CONFIG` in a fresh temporary directory
holding `program.py`. This script sets the resource limits (lowering a limit needs no
privilege, so it works inside a user namespace, where the limits count that namespace's
processes), installs an audit hook (PEP 578) before any program code runs, then executes the
program as `__main__`. Exit codes the parent reads: 0 the program ended normally, 1 it raised,
MEMORY_EXIT it ran out of memory (its address space is capped), CPU_EXIT it ran out of CPU
time, or what it passed to exit().

The hook refuses, with PermissionError: creating processes (fork, exec, spawn, subprocess,
os.system), loading ctypes (which could call libc past every other guard), writing, creating,
renaming or deleting any path outside the working directory, opening another process's /proc
entry (its environment), and, when the parent found no network namespace, creating or using
sockets. Audit hooks cannot be removed once added.
"""

import builtins
import json
import os
import re
import resource
import signal
import sys

MEMORY_EXIT = 86
CPU_EXIT = 87

PROCESS_EVENTS = {
    "os.fork",
    "os.forkpty",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.system",
    "os.startfile",
    "pty.spawn",
    "subprocess.Popen",
}
SOCKET_EVENTS = {
    "socket.__new__",
    "socket.bind",
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.sendmsg",
    "socket.sendto",
}
# Events whose arguments begin with the path(s) they change.
PATH_EVENTS = {
    "os.chmod": 1,
    "os.chown": 1,
    "os.link": 2,
    "os.mkdir": 1,
    "os.remove": 1,
    "os.rename": 2,
    "os.rmdir": 1,
    "os.symlink": 2,
    "os.truncate": 1,
    "os.utime": 1,
    "shutil.rmtree": 1,
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PROC_ENTRY = re.compile(r"/proc/(\d+)(?:/|$)")


def _inside(path, root):
    if isinstance(path, int):  # a file descriptor already opened
        return True
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    resolved = os.path.realpath(os.path.join(root, os.fspath(path)))
    return resolved == root or resolved.startswith(root + os.sep) or resolved == os.devnull


def _foreign_proc(path):
    """Whether `path` is under another process's /proc entry (its environ, memory, files)."""
    if isinstance(path, int):
        return False
    match = PROC_ENTRY.match(os.path.realpath(os.fsdecode(path)))
    return match is not None and int(match.group(1)) != os.getpid()


def _writes(mode, flags):
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def make_hook(root, block_network):
    def hook(event, args):
        if event in PROCESS_EVENTS:
            raise PermissionError(f"sandbox: {event} refused (no processes)")
        if event == "import" and args[0] in ("ctypes", "_ctypes"):
            raise PermissionError("sandbox: ctypes refused")
        if block_network and event in SOCKET_EVENTS:
            raise PermissionError(f"sandbox: {event} refused (no network)")
        if event == "open" and _writes(args[1], args[2]) and not _inside(args[0], root):
            raise PermissionError(f"sandbox: writing {args[0]!r} refused (outside {root})")
        if event == "open" and _foreign_proc(args[0]):
            raise PermissionError(f"sandbox: reading {args[0]!r} refused (another process)")
        if event in PATH_EVENTS:
            for path in args[: PATH_EVENTS[event]]:
                if not _inside(path, root):
                    raise PermissionError(f"sandbox: {event} {path!r} refused (outside {root})")

    return hook


def set_limits(limits):
    mb = 1024 * 1024
    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # SIGXCPU at the soft limit ends the run with an exit code of its own (the PID namespace's
    # init would ignore the signal); code stuck in C gets SIGKILL a second later.
    signal.signal(signal.SIGXCPU, _out_of_cpu)


def _out_of_cpu(signum, frame):
    sys.stderr.write("sandbox: CPU time limit reached\n")
    sys.stderr.flush()
    os._exit(CPU_EXIT)


def main():
    config = json.loads(sys.argv[1])
    root = os.path.realpath(os.getcwd())
    with open("program.py", encoding="utf-8") as file:
        source = file.read()
    code = compile(source, "program.py", "exec")  # a syntax error is the program's failure
    set_limits(config["limits"])
    sys.addaudithook(make_hook(root, config["block_network"]))
    sys.argv = ["program.py"]
    try:
        exec(code, {"__name__": "__main__", "__builtins__": builtins})
    except MemoryError:
        sys.stderr.write("sandbox: MemoryError (memory limit reached)\n")
        sys.stderr.flush()
        os._exit(MEMORY_EXIT)


if __name__ == "__main__":
    main()  # an exception the program raises prints its traceback and exits 1
