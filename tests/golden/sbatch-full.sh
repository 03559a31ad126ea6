#!/bin/sh
#SBATCH --job-name=nodetunnel-jupyter
#SBATCH --partition=gpu
#SBATCH --account=proj-42
#SBATCH --qos=normal
#SBATCH --reservation='maint window'
#SBATCH --constraint='a100&ib'
#SBATCH --time=4:00:00
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --gres=gpu:a100:1
#SBATCH --gpus=a100:1
#SBATCH --chdir='/home/alice/my project'
#SBATCH --output=/home/alice/.nodetunnel/logs/%j.log
#SBATCH --no-requeue
#SBATCH --mail-type=END
#SBATCH '--comment=my lab'"'"'s notebook'
#SBATCH --exclusive
#SBATCH -N1
: end of the SBATCH directives
set -eu
exec jupyter lab --no-browser --sock "$SOCK"
