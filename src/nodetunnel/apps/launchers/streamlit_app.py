# nodetunnel launcher: a Streamlit script on a Unix socket (Streamlit >= 1.57 serves
# through Starlette/uvicorn and refuses unix:// addresses, so its ASGI app is served here).
# usage: python3 launch.py SOCKET_PATH SCRIPT.py [SCRIPT ARGS...]
import contextlib
import os
import signal
import socket
import sys

import streamlit as st
import uvicorn

sock_path, script = sys.argv[1], os.path.abspath(os.path.expanduser(sys.argv[2]))
sys.argv = [script, *sys.argv[3:]]  # what the script sees, as with "streamlit run S -- ARGS"
os.umask(0o077)  # the socket is srwx------ (uvicorn --uds would chmod it 0666)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock_path)  # an existing path is an error: no silent take-over
s.listen(2048)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # uvicorn re-raises it after shutdown
try:
    app = st.App(script)
    config = uvicorn.Config(app, ws="websockets-sansio", log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[s])
finally:
    s.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
