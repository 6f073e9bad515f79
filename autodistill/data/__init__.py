"""Pre-training data: corpora, tokenizers (WordPiece, BPE, SentencePiece), BERT MLM + NSP
examples, input pipeline."""

from autodistill.data.corpora import (
    BBC_TOPICS,
    BbcNews,
    Corpus,
    CorpusStats,
    Document,
    TextFiles,
    bbc_news_dir,
)
from autodistill.data.examples import FEATURES, ExampleConfig, Pairs, create_pairs, mask_batch
from autodistill.data.pipeline import PretrainingData, pretraining_data
from autodistill.data.tfds_corpus import TfdsText  # needs the tfds extra only when used
from autodistill.data.tokenization import Tokenizer, split_sentences
from autodistill.data.tokenized import (
    CorpusTooSmallError,
    TokenizedCorpus,
    split_documents,
    tokenize_corpus,
)
