"""A small model zoo trained from data that ships with scikit-learn (the UCI digits).

See ``docs/zoo.md``. The weights are committed in ``feassample/models/weights`` with their
SHA-256 in ``manifest.json``; nothing is ever downloaded.
"""
from .vision import import_torchvision, prepare_torchvision

# Before anything imports torchvision: declare the two operators its import needs when its
# compiled ops do not load beside this torch (docs/models.md, "torchvision on a CPU torch").
prepare_torchvision()

from .digits import (WEIGHTS_DIR, DigitsClassifier, DigitsDecoder, DigitsEncoder,
                     DigitsGenerator, DigitsVAE, WeightsChecksumError, cache_dir, digits_data,
                     load_state_dict_file, read_manifest, sha256_file)
from .files import load_object
from .formats import load_model_file
from .formats import (UnsafeModelFile, load_exported, load_model, load_state_dict, load_timm,
                      load_torchscript, load_torchvision)
from .neurons import digits_neuron, embed
from .zoo import load_classifier, load_generator, load_vae

__all__ = ["WEIGHTS_DIR", "DigitsClassifier", "DigitsDecoder", "DigitsEncoder",
           "DigitsGenerator", "DigitsVAE", "WeightsChecksumError", "cache_dir", "digits_data",
           "load_classifier", "load_generator", "load_state_dict_file", "load_vae",
           "read_manifest", "sha256_file", "load_model_file", "load_object", "digits_neuron",
           "embed", "UnsafeModelFile", "load_exported", "load_model", "load_state_dict",
           "load_timm", "load_torchscript", "load_torchvision", "import_torchvision",
           "prepare_torchvision"]
