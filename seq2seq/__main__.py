"""``python -m seq2seq``: the same command line as the ``seq2seq`` console script."""

import sys

from seq2seq.commands import main

if __name__ == "__main__":
    sys.exit(main())
