"""Serving trained models over HTTP: the FastAPI app (``seq2seq.serving.app.create_app``), its
limits (``limits.ServeLimits``), the models it holds and their dynamic batching (``models``,
``batching``). ``seq2seq serve`` is the command line over it. Importing this package loads no
web framework; ``app`` does."""
