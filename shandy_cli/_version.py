__version__ = "0.1.0"


def version_line() -> str:
    """What ``shandy --version`` prints (``__main__``'s fast path and the typer option)."""
    return f"shandy {__version__}"
