#!/bin/sh
#SBATCH --job-name=nodetunnel
#SBATCH --no-requeue
: end of the SBATCH directives
set -eu
exec jupyter lab --no-browser --sock "$SOCK"
