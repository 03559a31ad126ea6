# nodetunnel launcher: serve a Dash (or Flask, or any WSGI) app file on a Unix socket.
# usage: python3 launch.py SOCKET_PATH APP_FILE.py [NAME]
# The file is imported under a name other than __main__, so its
# "if __name__ == '__main__': app.run(host='0.0.0.0', port=8050)" block does not run.
import contextlib
import importlib.util
import os
import signal
import sys

sock_path, app_file = sys.argv[1], os.path.abspath(os.path.expanduser(sys.argv[2]))
name = sys.argv[3] if len(sys.argv) > 3 else "app"
os.umask(0o077)
sys.path.insert(0, os.path.dirname(app_file))  # the app's sibling modules import as usual
os.chdir(os.path.dirname(app_file))  # Dash finds ./assets next to the app
spec = importlib.util.spec_from_file_location("nodetunnel_user_app", app_file)
if spec is None or spec.loader is None:
    sys.exit(f"nodetunnel: cannot load {app_file} as a Python file")
module = importlib.util.module_from_spec(spec)
sys.modules["nodetunnel_user_app"] = module
spec.loader.exec_module(module)
if not hasattr(module, name):
    sys.exit(
        f"nodetunnel: {app_file} has no {name!r} (give the name of the Dash object with --var)"
    )
obj = getattr(module, name)
wsgi = getattr(obj, "server", obj)  # a Dash app's Flask server; a Flask/WSGI app as it is
if os.path.exists(sock_path):
    sys.exit(f"nodetunnel: socket path {sock_path} exists")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
from werkzeug.serving import make_server  # noqa: E402  (Flask's own server library)

try:
    make_server("unix://" + sock_path, 0, wsgi, threaded=True).serve_forever()
finally:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
