"""Dash (and Flask, any WSGI app file), served on the job's private Unix socket.

The seed's ``app.py`` ends in ``app.run(debug=False, host='0.0.0.0', port=8050)``
under ``if __name__ == '__main__'``: the launcher imports the file under another
name, so that block never runs, and serves the Dash app's Flask server itself.
"""

from __future__ import annotations

from .base import Param, Slot, launcher_app

DASH = launcher_app(
    "wsgi_app.py",
    Slot("app_file"),
    Slot("var"),
    package="dash",
    name="dash",
    title="Dash",
    ready_path="/_dash-layout",
    url_path="/",
    preferred_port=8050,
    params=(
        Param("app_file", ("APP",), help="The app's Python file on the cluster.", required=True),
        Param("var", ("--var",), help="The name of the Dash object in the file.", default="app"),
    ),
    summary="Start a Dash app (its Python file) in a SLURM job and open it in your browser.",
    details="The file is imported, not run, so an app.run(host='0.0.0.0', port=8050) at its "
    "end does not run: nodetunnel serves the app on a private Unix socket instead, and no "
    "port on the node is opened.",
    examples=("app.py --cluster swc", "dashboard.py --var server_app --cluster swc -p cpu"),
)
