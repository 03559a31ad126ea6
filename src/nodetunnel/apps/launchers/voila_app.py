# nodetunnel launcher: Voila on a Unix socket (voila listens only on TCP): its own app runs here
# and serves on a socket bound in the job's 0700 directory. --token makes it read its token from
# $JUPYTER_TOKEN_FILE (0600, made on the laptop); without it Voila has no auth at all.
# usage: python3 launch.py SOCKET_PATH NOTEBOOK.ipynb [VOILA FLAGS...]
import contextlib
import importlib.util
import os
import sys

if importlib.util.find_spec("voila") is None:
    sys.exit(
        "nodetunnel: voila is not installed in the environment the job activated "
        "(pip install voila)"
    )

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
from voila.app import Voila

sock_path = sys.argv[1]
args = [os.path.expanduser(a) if a.startswith("~") else a for a in sys.argv[2:]]
os.umask(0o077)
if os.path.exists(sock_path):
    sys.exit(f"nodetunnel: socket path {sock_path} exists")


def listen(self):
    sock = tornado.netutil.bind_unix_socket(sock_path, mode=0o600)
    tornado.httpserver.HTTPServer(self.app).add_socket(sock)
    self.log.info("Voila is serving on the Unix socket %s", sock_path)
    self.ioloop = tornado.ioloop.IOLoop.current()
    try:
        self.ioloop.start()
    except KeyboardInterrupt:
        self.log.info("Stopping...")
    finally:
        self.stop()


Voila.listen = listen
try:
    # The kernel's channels as Unix sockets in the private directory, not TCP ports on the node.
    private = ["--KernelManager.transport=ipc",
               f"--Voila.connection_dir_root={os.path.dirname(sock_path)}"]  # fmt: skip
    Voila.launch_instance(argv=[*args, "--no-browser", "--token", *private])
finally:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
