"""`python -m runlens` runs the command line (imported as `runlens.cli`, exactly once)."""

from runlens.cli import main

main()
