"""One module per ``magbayes`` subcommand (see :mod:`magbayes.cli`)."""
