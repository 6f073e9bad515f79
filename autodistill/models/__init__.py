"""Teacher (BERT) and student (MobileBERT-style template) models, Hugging Face interop, counts."""

from autodistill.models.configs import ACTIVATIONS, FACTORS, MOBILEBERT, BertConfig, StudentConfig
from autodistill.models.layers import ModelOutput
from autodistill.models.student import StudentBlock, StudentEncoder, StudentForPreTraining
from autodistill.models.teacher import BertEncoder, BertForPreTraining, BertLayer
