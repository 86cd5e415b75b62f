"""One module per `parity` subcommand, each with `add_parser(subparsers)` and `run(args) -> int`."""
