NT_SESSION_DIR=/home/alice/.nodetunnel/sessions/nt-0123abcd
NT_TOKEN_FILE="$NT_SESSION_DIR/token"
umask 077
nt_fail() {
    printf 'nodetunnel: %s\n' "$1" >&2
    printf '%s\n' "$1" > "$NT_SESSION_DIR/error.tmp" && mv -f "$NT_SESSION_DIR/error.tmp" "$NT_SESSION_DIR/error"
    exit 1
}
module load gcc/12.2.0 || nt_fail 'module gcc/12.2.0 could not be loaded'
module load cuda/12.1 || nt_fail 'module cuda/12.1 could not be loaded'
command -v conda >/dev/null 2>&1 || nt_fail 'conda is not on PATH (try --module to load it)'
eval "$(conda shell.posix hook)" || nt_fail 'conda shell hook failed'
conda activate ml-2024 || nt_fail 'conda environment ml-2024 not found'
[ -f "$HOME"/venvs/lab/bin/activate ] || nt_fail 'no virtualenv at ~/venvs/lab'
. "$HOME"/venvs/lab/bin/activate
# --setup, as given:
{
export OMP_NUM_THREADS=4
if [ -f ~/.cluster_rc ]; then . ~/.cluster_rc; fi
echo "setup done"
} || nt_fail 'the --setup command failed'
cd "$HOME"/project || nt_fail 'cannot enter work directory ~/project'
set -u
command -v jupyter >/dev/null 2>&1 || nt_fail "jupyter not found on PATH on $(hostname): install JupyterLab in the environment you activate (pip install jupyterlab)"
NT_RUN=$(mktemp -d /tmp/nt.XXXXXX) || nt_fail 'cannot create a private directory in /tmp'
NT_SOCK="$NT_RUN/s"
NT_PID=""
trap '[ -n "$NT_PID" ] && kill "$NT_PID" 2>/dev/null; rm -rf "$NT_RUN"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
export JUPYTER_TOKEN_FILE="$NT_TOKEN_FILE"
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
mv -f "$NT_SESSION_DIR/endpoint.tmp" "$NT_SESSION_DIR/endpoint"
wait "$NT_PID"
NT_RC=$?
NT_PID=""
exit "$NT_RC"
