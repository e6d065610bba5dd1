"""`python recipes/translate.py VERB ...` is `seq2seq translate VERB ...` (see `seq2seq translate --help`).

python recipes/translate.py train --config multi30k_de_en
"""

import sys

from seq2seq.commands import task_main

if __name__ == "__main__":
    sys.exit(task_main("translate"))
