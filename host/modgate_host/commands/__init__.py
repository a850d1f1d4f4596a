"""One module per `modgate` subcommand; see modgate_host.cli."""
