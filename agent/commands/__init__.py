"""One module per `ensnas` subcommand; each defines add_parser(subparsers) and run(args) -> int."""
