"""`python recipes/textgen.py VERB ...` is `seq2seq textgen VERB ...` (see `seq2seq textgen --help`).

python recipes/textgen.py train --config shakespeare_char
"""

import sys

from seq2seq.commands import task_main

if __name__ == "__main__":
    sys.exit(task_main("textgen"))
