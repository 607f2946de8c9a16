"""`python -m tfdist ...` is the `tfdist` console script."""

from tfdist.cli.main import main

main()
