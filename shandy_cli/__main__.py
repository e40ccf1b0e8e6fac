"""``shandy`` and ``python -m shandy_cli``: the console script's entry point.

``shandy --version`` alone is answered here, before the command line (typer, rich,
every command's module) is imported: it is what scripts and installers run to check
an install, and it should cost little more than Python's own start-up. Every other
command line, ``--version`` among other arguments included, goes to typer unchanged.
"""

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from shandy_cli._version import version_line

        print(version_line())
        return
    from shandy_cli.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
