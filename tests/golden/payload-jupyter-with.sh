NT_SESSION_DIR=/home/alice/.nodetunnel/sessions/nt-0123abcd
NT_TOKEN_FILE="$NT_SESSION_DIR/token"
umask 077
nt_fail() {
    printf 'nodetunnel: %s\n' "$1" >&2
    printf '%s\n' "$1" > "$NT_SESSION_DIR/error.tmp" && mv -f "$NT_SESSION_DIR/error.tmp" "$NT_SESSION_DIR/error"
    exit 1
}
set -u
command -v jupyter >/dev/null 2>&1 || nt_fail "jupyter not found on PATH on $(hostname): install JupyterLab in the environment you activate (pip install jupyterlab)"
NT_RUN=/tmp/nt.0123456789abcdef
mkdir -m 700 "$NT_RUN" || nt_fail "cannot create the private directory $NT_RUN"
NT_SOCK="$NT_RUN/s"
NT_PID=""
trap '[ -n "$NT_PID" ] && kill "$NT_PID" 2>/dev/null; rm -rf "$NT_RUN"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
export JUPYTER_TOKEN_FILE="$NT_TOKEN_FILE"
# Further apps of this job, each on its own socket (or port), ended with the job.
NT_XPIDS=""
trap 'kill $NT_XPIDS 2>/dev/null; [ -n "$NT_PID" ] && kill "$NT_PID" 2>/dev/null; rm -rf "$NT_RUN"' EXIT
NT_SOCK1="$NT_RUN/s1"
NT_PORT2=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || nt_fail 'python3 is needed to find a free port'
# Where each app of the job listens, for all of them (see 'nodetunnel run --help').
export NT_SOCKET_JUPYTER="$NT_SOCK" NT_SOCKET_TENSORBOARD="$NT_SOCK1" NT_PORT_RUN="$NT_PORT2"
# app 1: tensorboard
command -v python3 >/dev/null 2>&1 || nt_fail "python3 not found on PATH on $(hostname): Python 3 is needed; install TensorBoard in the environment you activate (pip install tensorboard)"
cat > "$NT_RUN/launch1.py" <<'NODETUNNEL_LAUNCHER_END' || nt_fail 'cannot write the launcher'
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
NODETUNNEL_LAUNCHER_END
( exec python3 "$NT_RUN"/launch1.py "$NT_SOCK1" --logdir '~/runs' ) &
NT_PID1=$!
NT_XPIDS="$NT_XPIDS $NT_PID1"
# app 2: run
command -v python3 >/dev/null 2>&1 || nt_fail "python3 not found on PATH on $(hostname): check the command, and the environment it needs (--venv, --conda-env, --module, --setup)"
( export NT_PORT="$NT_PORT2"; exec python3 -m http.server --bind 127.0.0.1 "$NT_PORT2" ) &
NT_PID2=$!
NT_XPIDS="$NT_XPIDS $NT_PID2"
NT_DEADLINE=$(( $(date +%s) + 300 ))
nt_wait() {  # until the command $1 succeeds, while the app lives, until the deadline
    while ! "$1"; do
        if ! kill -0 "$NT_PID" 2>/dev/null; then
            [ "${2:-}" = or-return ] && return 1
            nt_fail "the app exited before listening; see the job log"
        fi
        [ "$(date +%s)" -lt "$NT_DEADLINE" ] || nt_fail 'the app did not listen within 300 s'
        sleep 0.1
    done
}
NT_NODE="${SLURMD_NODENAME:-$(hostname)}"
NT_USE_SOCKET=1
if [ "$NT_USE_SOCKET" = 1 ]; then
    [ "${#NT_SOCK}" -le 100 ] || nt_fail "socket path $NT_SOCK is too long for a Unix socket"
    jupyter lab --no-browser --sock="$NT_SOCK" &
    NT_PID=$!
    nt_socket_ready() { [ -S "$NT_SOCK" ]; }
    if nt_wait nt_socket_ready or-return; then
        printf 'socket=%s\nhost=%s\n' "$NT_SOCK" "$NT_NODE" > "$NT_SESSION_DIR/endpoint.tmp"
    elif { jupyter server --version 2>/dev/null | awk -F. 'NR == 1 { ok = ($1 > 1 || ($1 == 1 && $2 >= 9)) } END { exit !ok }'; }; then
        nt_fail "the app exited before listening; see the job log"
    else
        echo 'nodetunnel: this version cannot listen on a Unix socket; using 127.0.0.1' >&2
        NT_USE_SOCKET=0
    fi
fi
if [ "$NT_USE_SOCKET" = 0 ]; then
    # Only here is the cluster's python3 needed: to find a free port, then to see it listen.
    NT_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || nt_fail 'python3 is needed to find a free port'
    jupyter lab --no-browser --ip=127.0.0.1 --port="$NT_PORT" --ServerApp.port_retries=0 &
    NT_PID=$!
    nt_port_ready() { python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2).close()' "$NT_PORT" 2>/dev/null; }
    nt_wait nt_port_ready
    printf 'port=%s\nhost=%s\n' "$NT_PORT" "$NT_NODE" > "$NT_SESSION_DIR/endpoint.tmp"
fi
nt_wait_extra() {  # until $2 succeeds, while process $1 lives, until the deadline
    while ! "$2"; do
        kill -0 "$1" 2>/dev/null || nt_fail "app $3 exited before listening; see the job log"
        [ "$(date +%s)" -lt "$NT_DEADLINE" ] || nt_fail "app $3 did not listen within 300 s"
        sleep 0.1
    done
}
printf 'app1=%s\nready1=%s\nurl1=%s\n' tensorboard /data/runs / >> "$NT_SESSION_DIR/endpoint.tmp"
nt_ready1() { [ -S "$NT_SOCK1" ]; }
nt_wait_extra "$NT_PID1" nt_ready1 tensorboard
printf 'socket1=%s\n' "$NT_SOCK1" >> "$NT_SESSION_DIR/endpoint.tmp"
printf 'app2=%s\nready2=%s\nurl2=%s\n' run / / >> "$NT_SESSION_DIR/endpoint.tmp"
nt_ready2() { python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2).close()' "$NT_PORT2" 2>/dev/null; }
nt_wait_extra "$NT_PID2" nt_ready2 run
printf 'port2=%s\n' "$NT_PORT2" >> "$NT_SESSION_DIR/endpoint.tmp"
mv -f "$NT_SESSION_DIR/endpoint.tmp" "$NT_SESSION_DIR/endpoint"
wait "$NT_PID"
NT_RC=$?
NT_PID=""
exit "$NT_RC"
