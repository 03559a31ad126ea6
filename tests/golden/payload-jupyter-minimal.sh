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
[ "${#NT_SOCK}" -le 100 ] || nt_fail "socket path $NT_SOCK is too long for a Unix socket"
NT_PID=""
trap '[ -n "$NT_PID" ] && kill "$NT_PID" 2>/dev/null; rm -rf "$NT_RUN"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
export JUPYTER_TOKEN_FILE="$NT_TOKEN_FILE"
jupyter lab --no-browser --sock="$NT_SOCK" &
NT_PID=$!
NT_DEADLINE=$(( $(date +%s) + 300 ))
while [ ! -S "$NT_SOCK" ]; do
    kill -0 "$NT_PID" 2>/dev/null || nt_fail "the app exited before listening; see the job log"
    [ "$(date +%s)" -lt "$NT_DEADLINE" ] || nt_fail 'the app did not listen within 300 s'
    sleep 0.2
done
printf 'socket=%s\nhost=%s\n' "$NT_SOCK" "${SLURMD_NODENAME:-$(hostname)}" > "$NT_SESSION_DIR/endpoint.tmp"
mv -f "$NT_SESSION_DIR/endpoint.tmp" "$NT_SESSION_DIR/endpoint"
wait "$NT_PID"
NT_RC=$?
NT_PID=""
exit "$NT_RC"
