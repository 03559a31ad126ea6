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
date +%s > "$NT_SESSION_DIR/heartbeat"
echo 1800 > "$NT_SESSION_DIR/lease"
mv -f "$NT_SESSION_DIR/endpoint.tmp" "$NT_SESSION_DIR/endpoint"
NT_LEASE_S=1800
# The laptop rewrites the heartbeat while it keeps the session; the job ends without it.
# Its content is read (an open gets it fresh even from a caching shared home); a read
# that finds nothing readable keeps the last good time, so only a lease without any
# check-in ends the job.
NT_LAST=$(date +%s)
( while sleep 30; do
    kill -0 "$NT_PID" 2>/dev/null || exit 0
    NT_SEEN=$(cat "$NT_SESSION_DIR/heartbeat" 2>/dev/null) || NT_SEEN=""
    case "$NT_SEEN" in ""|*[!0-9]*) ;; *) NT_LAST=$NT_SEEN ;; esac
    if [ $(( $(date +%s) - NT_LAST )) -gt "$NT_LEASE_S" ]; then
        printf 'nodetunnel: %s\n' 'no nodetunnel has kept this session for 1800 s: the lease expired; ending the job' >&2
        printf '%s\n' 'no nodetunnel has kept this session for 1800 s: the lease expired' > "$NT_SESSION_DIR/ended"
        scancel "$SLURM_JOB_ID" 2>/dev/null || kill "$NT_PID"
        exit 0
    fi
done ) &
wait "$NT_PID"
NT_RC=$?
NT_PID=""
exit "$NT_RC"
