"""A user-style model factory for the checkpoint tests."""

from backdoorguard.data import load_dataset
from backdoorguard.models import create_model


def tiny_cnn():
    model = create_model("cnn-small", load_dataset("digits").task, width=8, features=16)
    del model.model_spec
    return model
