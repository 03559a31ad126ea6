# nodetunnel launcher: code-server on the job's Unix socket, behind its password login, the
# password being the secret made on the laptop ($NT_TOKEN_FILE, 0600) and handed over in the
# environment ($PASSWORD: code-server refuses it in argv). Then it *is* code-server (exec).
# usage: python3 launch.py SOCKET_PATH [DIR] [CODE-SERVER FLAGS...]
import os
import shutil
import sys

sock_path = sys.argv[1]
args = [os.path.expanduser(a) if a.startswith("~") else a for a in sys.argv[2:]]
run_dir = os.path.dirname(sock_path)
exe = shutil.which("code-server")
if exe is None:
    sys.exit("nodetunnel: code-server is not on PATH on this node: install it in the "
             "environment you activate (e.g. npm install -g code-server)")  # fmt: skip
with open(os.environ.pop("NT_TOKEN_FILE")) as f:
    password = f.read().strip()
os.umask(0o077)
# An empty config of its own: else code-server writes ~/.config/code-server/config.yaml with a
# password and a TCP bind address of its own on first start.
config = os.path.join(run_dir, "code-server.yaml")
open(config, "x").close()
env = {**os.environ, "PASSWORD": password}
env.pop("HASHED_PASSWORD", None)
argv = [
    exe, "--auth", "password", "--config", config,
    "--socket", sock_path, "--socket-mode", "600",
    # Its session socket would be in the shared home (~/.local/share/code-server), for every job.
    "--session-socket", os.path.join(run_dir, "ipc.sock"),
    "--disable-telemetry", "--disable-update-check", *args,
]  # fmt: skip
os.execve(exe, argv, env)  # noqa: S606  (argv, no shell: it becomes code-server)
