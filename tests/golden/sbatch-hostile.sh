#!/bin/sh
#SBATCH --job-name='a'"'"'; echo foo'
#SBATCH --partition='$(touch /tmp/x)'
#SBATCH --account='`id`'
#SBATCH --qos=back"\\"slash
#SBATCH --chdir='/home/alice/with space'
#SBATCH --output='/home/alice/log #%j.out'
#SBATCH --no-requeue
#SBATCH '--comment=x #SBATCH --partition=evil'
: end of the SBATCH directives
true
