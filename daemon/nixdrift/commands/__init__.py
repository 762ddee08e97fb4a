"""One module per subcommand, each with `register(subparsers)`; cli.py wires them."""
