# nodetunnel launcher: "panel serve" on the job's Unix socket, behind Panel's basic auth whose
# password is the secret made on the laptop ($NT_TOKEN_FILE, 0600). Panel's own CLI runs in
# this process, so neither the password nor the cookie secret is ever in a command line.
# (PANEL_BASIC_AUTH would lower-case the password: panel/config.py.)
# usage: python3 launch.py SOCKET_PATH serve APP.py [PANEL FLAGS...]
import contextlib
import importlib.util
import os
import secrets
import sys

if importlib.util.find_spec("panel") is None:
    sys.exit(
        "nodetunnel: panel is not installed in the environment the job activated "
        "(pip install panel)"
    )
sock_path = sys.argv[1]
args = [os.path.expanduser(a) if a.startswith("~") else a for a in sys.argv[2:]]
with open(os.environ["NT_TOKEN_FILE"]) as f:
    password = f.read().strip()
os.umask(0o077)
if os.path.exists(sock_path):  # Panel would silently replace whatever is there
    sys.exit(f"nodetunnel: socket path {sock_path} exists")
# NAME=VALUE: a secret may start with "-", which argparse would take for the next flag.
sys.argv = ["panel", *args, "--unix-socket", sock_path, "--liveness", f"--basic-auth={password}",
            f"--cookie-secret={secrets.token_urlsafe(32)}"]  # fmt: skip
os.environ.pop("PANEL_BASIC_AUTH", None)  # it would win over --basic-auth
os.environ.pop("PANEL_COOKIE_SECRET", None)  # both given: Panel refuses to start
try:
    from panel.command import main

    main()
finally:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
