"""Key runs kept honest: revalidation rounds (here or through Slurm) and bisection of an
environment change to the package that broke a result. See docs/revalidate.md."""
