"""seq2seq: recurrent sequence generation with one attentional RNN decoder."""

__version__ = "0.1.0"
