"""Data: reading files, language-model streams and corpora."""
