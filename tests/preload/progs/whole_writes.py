"""One big blocking write of the program's, made while the library's timer
signal fires (tests/preload/test_whole_writes.py).  Usage: whole_writes.py
CASE

First a socket gets 16 MiB its client does not read (under esca, with
ESCA_BUDGET above it, the rest parks, and under `sequential` the timer
signal then fires every 2 ms to move it).  Then 2 MiB (a pattern) go in
one call that blocks, its reader being slow: CASE
- print    sys.stdout.write of it as text, and a flush (stdout: the
           test's pipe, read slowly);
- write    os.write(1, ...);
- writev   os.writev(1, [first MiB, second MiB]);
- send     socket.send on a blocking unix socketpair whose other end a
           thread reads slowly (passed through to the kernel);
- alarm    write, with a SIGALRM handler of the program's called every
           5 ms: its signal ends the write short, plainly as under esca;
- restart  write, a SIGUSR1 handler with SA_RESTART (siginterrupt False)
           run at 0.5 s while the reader has stopped (the test's reader
           stops after 512 KiB for 2 s): short at the signal, as plainly
           (a further write of the library's, blocked with nothing copied,
           would be restarted and last until the reader came back);
- shutdown socket.send (MSG_WAITALL: passed through) of 8 MiB on a
           blocking TCP socket whose client reads 1 MiB slowly and stops;
           SIGPIPE at its default; another thread shuts the socket down
           at 0.5 s: the send returns what went, no SIGPIPE (Linux raises
           none at a send that moved bytes);
- reuse    os.write of 8 MiB to stdout (the test's reader stops for 1 s
           after 512 KiB); another thread closes fd 1 at 0.5 s and opens
           a file, which gets the number: Linux's write
           holds its pipe, and the file gets none of the bytes (file: its
           size);
- gone     write with SIGPIPE at its default; the test's reader reads
           512 KiB and closes the pipe: killed by SIGPIPE, as plainly;
- sfpipe   64 KiB written to stdout (a pipe: full), then os.sendfile of
           4 MiB from a file into it: one pipe's worth, as plainly (a
           splice into a pipe is short by design).
Prints one JSON line on stderr: ret (what the call returned; print: the
characters written), got (send: what the reader got, and ok: whether it
is the pattern's first ret bytes).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

BIG = 16 << 20
N = 2 << 20


def pattern() -> bytes:
    return (bytes(range(97, 123)) * (N // 26 + 1))[:N]


def main() -> None:
    case = sys.argv[1]
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(lst.getsockname())
    s, _ = lst.accept()
    s.setblocking(False)
    s.send(b"p" * BIG)
    time.sleep(0.1)  # under esca: flushed, the rest parked
    data = pattern()
    out: dict = {}
    if case == "print":
        out["ret"] = sys.stdout.write(data.decode())
        sys.stdout.flush()
    elif case == "alarm":
        signal.signal(signal.SIGALRM, lambda *_: None)
        signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
        out["ret"] = os.write(1, data)
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    elif case == "restart":
        signal.signal(signal.SIGUSR1, lambda *_: None)
        signal.siginterrupt(signal.SIGUSR1, False)
        main = threading.get_ident()
        threading.Timer(0.5, lambda: signal.pthread_kill(main, signal.SIGUSR1)).start()
        t0 = time.monotonic()
        out["ret"] = os.write(1, data)
        out["secs"] = round(time.monotonic() - t0, 2)
    elif case == "shutdown":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        cl = socket.socket()
        cl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        cl.connect(lst.getsockname())
        sv, _ = lst.accept()

        def slow_client() -> None:
            got = 0
            while got < 1 << 20:
                got += len(cl.recv(65536))
                time.sleep(0.002)

        threading.Thread(target=slow_client).start()
        threading.Timer(0.5, lambda: sv.shutdown(socket.SHUT_RDWR)).start()
        try:
            out["ret"] = sv.send(b"s" * (8 << 20), socket.MSG_WAITALL)
        except OSError as e:
            out["ret"] = e.strerror
    elif case == "reuse":
        import tempfile

        holder: list = []

        def take_the_number() -> None:
            os.close(1)
            holder.append(tempfile.TemporaryFile())  # gets fd 1

        threading.Timer(0.5, take_the_number).start()
        out["ret"] = os.write(1, b"r" * (8 << 20))
        time.sleep(0.1)
        out["file"] = os.fstat(holder[0].fileno()).st_size if holder else -1
    elif case == "gone":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        out["ret"] = os.write(1, data)
    elif case == "sfpipe":
        import tempfile

        with tempfile.TemporaryFile() as f:
            f.write(b"z" * (4 << 20))
            f.flush()
            os.write(1, b"y" * 65536)  # the pipe full: the sendfile blocks
            out["ret"] = os.sendfile(1, f.fileno(), 0, 4 << 20)
    elif case == "write":
        out["ret"] = os.write(1, data)
    elif case == "writev":
        out["ret"] = os.writev(1, [data[: N // 2], data[N // 2 :]])
    else:
        a, b = socket.socketpair()
        buf = bytearray()

        def slow_reader() -> None:
            while True:
                d = b.recv(65536)
                if not d:
                    return
                buf.extend(d)
                time.sleep(0.002)

        t = threading.Thread(target=slow_reader)
        t.start()
        # MSG_WAITALL (which a stream send ignores) is no flag the library
        # defers with: the send goes to the kernel, as a big one does
        out["ret"] = a.send(data, socket.MSG_WAITALL)
        a.close()
        t.join()
        out.update(got=len(buf), ok=bytes(buf) == data[: out["ret"]])
    print(json.dumps(out), file=sys.stderr)


if __name__ == "__main__":
    main()
