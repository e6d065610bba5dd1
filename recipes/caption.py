"""`python recipes/caption.py VERB ...` is `seq2seq caption VERB ...` (see `seq2seq caption --help`).

python recipes/caption.py train --config emoji_scratch
"""

import sys

from seq2seq.commands import task_main

if __name__ == "__main__":
    sys.exit(task_main("caption"))
