"""Small launchers sent with the job: they serve an app's own ASGI/WSGI object on the job's
private Unix socket, for apps that cannot listen on one themselves. Each runs with the
Python of the environment the job activated; nothing is installed on the cluster."""
