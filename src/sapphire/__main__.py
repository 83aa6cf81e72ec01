"""`python -m sapphire` runs the command line."""

from sapphire.cli.main import main

main()
