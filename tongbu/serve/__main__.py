"""``python -m tongbu.serve``: the same as ``tongbu serve``."""

import typer

from tongbu.serve.cli import serve_command


def main() -> None:
    """Run ``tongbu serve`` from the command line."""
    typer.run(serve_command)


if __name__ == "__main__":
    main()
