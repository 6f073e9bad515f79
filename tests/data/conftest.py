"""The data tests import the synthetic-corpus helpers as ``from conftest import ...``; the
fixtures themselves live in ``tests/conftest.py`` and the helpers in ``tests/synthetic.py``."""

from synthetic import (NUM_DOCS, SENTENCES_PER_DOC, WORDS_PER_DOC,  # noqa: F401
                       doc_of_token, vocab, write_corpus)
