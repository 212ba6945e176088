"""``python -m gateskip.cli``: the ``gateskip`` command."""

from gateskip.cli import main

if __name__ == "__main__":
    main(prog_name="gateskip")
