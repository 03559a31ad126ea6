# nodetunnel launcher: TensorBoard's WSGI app on a Unix socket ("tensorboard --host unix://"
# crashes in get_url). --load_fast=false: the fast loader would open a gRPC port without auth.
# usage: python3 launch.py SOCKET_PATH --logdir DIR [TENSORBOARD FLAGS...]
import contextlib
import os
import signal
import sys

from tensorboard import program
from werkzeug.serving import make_server

sock_path = sys.argv[1]
# A quoted ~ (from the laptop, where the shell left it alone) means the home directory here.
tb_args = [os.path.expanduser(a) if a.startswith("~") else a for a in sys.argv[2:]]
os.umask(0o077)
if os.path.exists(sock_path):
    sys.exit(f"nodetunnel: socket path {sock_path} exists")


class UnixSocketServer(program.TensorBoardServer):
    def __init__(self, wsgi_app, flags):
        self._server = make_server("unix://" + sock_path, 0, wsgi_app, threaded=True)

    def serve_forever(self):
        self._server.serve_forever()

    def get_url(self):
        return "http+unix://{}/".format(sock_path.replace("/", "%2F"))

    def print_serving_message(self):
        sys.stderr.write(f"TensorBoard serving on the Unix socket {sock_path}\n")
        sys.stderr.flush()


tb = program.TensorBoard(server_class=UnixSocketServer)
tb.configure(argv=["tensorboard", *tb_args, "--load_fast=false"])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    server = tb._make_server()
    server.print_serving_message()
    server.serve_forever()
finally:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
