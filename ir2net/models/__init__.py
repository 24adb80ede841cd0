"""Backbones, registered by name.  ``create_model("resnet20_bireal", recovery=...)``."""
from .registry import create_model, list_models, model_entry, register_model
from . import resnet_cifar, resnet_imagenet, vgg_small  # noqa: F401  (registers the models)
from .layers import IR2NetClassifier

__all__ = ["create_model", "list_models", "model_entry", "register_model", "IR2NetClassifier"]
