"""nodetunnel: web apps on SLURM compute nodes, in your laptop's browser."""

__version__ = "0.1.0"
