"""What each `livelambda` subcommand does; `devserver/cli.py` only parses the command line."""
