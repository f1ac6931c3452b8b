"""Bytes written just before exec, _exit and exit are not lost."""

import os
import sys

mode = sys.argv[1]
os.write(1, b"start %s\n" % mode.encode())
if mode == "exec":
    os.execv("/bin/echo", ["echo", "after exec"])
elif mode == "_exit":
    os.write(1, b"bye\n")
    os._exit(0)
else:
    os.write(1, b"bye\n")
    sys.exit(0)
