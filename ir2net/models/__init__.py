"""Backbones, registered by name with their defaults.  ``create_model("resnet20_bireal",
recovery=...)``; ``model_info(name)`` says its input size, recipe and presets."""
from .registry import ModelInfo, create_model, list_models, model_entry, model_info, register_model
from . import resnet_cifar, resnet_he, resnet_imagenet, vgg_small  # noqa: F401  (registers)
from .layers import IR2NetClassifier

__all__ = ["create_model", "list_models", "model_entry", "model_info", "ModelInfo",
           "register_model", "IR2NetClassifier"]
