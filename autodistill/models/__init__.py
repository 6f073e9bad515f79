"""Teacher (BERT) and student (MobileBERT-style template) models, the elastic envelope of a
space, Hugging Face interop, counts."""

from autodistill.models.configs import ACTIVATIONS, FACTORS, MOBILEBERT, BertConfig, StudentConfig
from autodistill.models.elastic import Envelope
from autodistill.models.layers import ElasticArch, ModelOutput
from autodistill.models.student import StudentBlock, StudentEncoder, StudentForPreTraining
from autodistill.models.teacher import BertEncoder, BertForPreTraining, BertLayer
