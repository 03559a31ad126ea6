# nodetunnel launcher: marimo on a Unix socket (marimo listens only on TCP): its own CLI runs,
# and uvicorn is handed a socket bound here, in the job's 0700 directory.
# usage: python3 launch.py SOCKET_PATH edit NOTEBOOK.py [MARIMO FLAGS...]
# The token comes from $NT_TOKEN_FILE (0600, made on the laptop) through --token-password-file.
import contextlib
import importlib.util
import os
import secrets
import signal
import socket
import sys


def main():
    if importlib.util.find_spec("marimo") is None:
        sys.exit(
            "nodetunnel: marimo is not installed in the environment the job activated "
            "(pip install marimo)"
        )
    sock_path = sys.argv[1]
    args = [os.path.expanduser(a) if a.startswith("~") else a for a in sys.argv[2:]]
    os.umask(0o077)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)  # srwx------; an existing path is an error: no silent take-over
    s.listen(2048)
    import uvicorn

    run = uvicorn.Server.run
    uvicorn.Server.run = lambda self, sockets=None: run(self, sockets=[s])
    try:  # marimo prints its URL with the token: print it without
        from marimo._server.api import lifespans

        shown = lifespans.print_startup
        lifespans.print_startup = lambda **kw: shown(**{**kw, "url": kw["url"].split("?")[0]})
    except (ImportError, AttributeError):
        pass
    if not {"-p", "--port"} & set(args):
        # Nothing binds it (uvicorn has the socket): it names marimo's cookie, so that two
        # sessions on one laptop keep theirs apart.
        args += ["--port", str(20000 + secrets.randbelow(40000))]
    token_file = os.environ["NT_TOKEN_FILE"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        from marimo._cli.cli import main as marimo

        extra = ["--skip-update-check"] if args[0] == "edit" else ["--token"]  # run: off by default
        sys.argv = ["marimo", *args[:2], "--headless", *extra,
                    "--token-password-file", token_file, *args[2:]]  # fmt: skip
        marimo()
    finally:
        s.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock_path)


# marimo's edit kernel is a multiprocessing spawn child that imports this file again.
if __name__ == "__main__":
    main()
